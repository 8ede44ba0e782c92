"""The lecture's three recurrent-network experiments, each a module runnable as `python -m gpudl.experiments.NAME`:
gradients (vanishing/exploding gradients), long_term (LSTM vs RNN on a long-term dependency), charlm (a
character-level LSTM language model)."""
