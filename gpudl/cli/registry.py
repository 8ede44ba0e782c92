"""The models of `gpudl train` and `gpudl predict`, one ModelEntry each (see entry.py): adding a model is one line
here and one module beside this one."""
from . import charlm, lenet5, perceptron, xor

MODELS = {entry.name: entry for entry in (perceptron.ENTRY, xor.ENTRY, lenet5.ENTRY, charlm.ENTRY)}


def owners(dest, which):
    """The names of the models whose `which` options ("train_options" or "predict_options") include `dest`."""
    return [name for name, entry in MODELS.items() if any(o.dest == dest for o in getattr(entry, which))]


def model_options(which):
    """{flag: (kwargs, help)} of every model-specific option, a flag shared by models once with their helps joined."""
    merged = {}
    for name, entry in MODELS.items():
        for option in getattr(entry, which):
            _, helps = merged.setdefault(option.flag, (option.kwargs, []))
            helps.append(f"{name}: {option.help}")
    return {flag: (kwargs, "; ".join(helps)) for flag, (kwargs, helps) in merged.items()}
