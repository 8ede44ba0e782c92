"""The lecture's recurrent-network experiments, each a module runnable as `python -m gpudl.experiments.NAME` (or
`gpudl experiment NAME`): gradients (vanishing/exploding gradients), long_term (LSTM vs RNN on a long-term
dependency). The third, a character-level LSTM language model, is a model like the others: models.CharLSTM, trained
by `gpudl train charlm`."""
