"""What the `gpudl` command knows about one model: a ModelEntry. Adding a model is writing one and listing it in
registry.MODELS."""
from collections.abc import Callable
from dataclasses import dataclass, field

from ..serialization import load


@dataclass(frozen=True)
class Option:
    """A command-line option only some models take: `flag`, its help for this model, and argparse keywords."""
    flag: str
    help: str
    kwargs: dict = field(default_factory=dict)

    @property
    def dest(self):
        return self.kwargs.get("dest", self.flag.lstrip("-").replace("-", "_"))


@dataclass(frozen=True)
class ModelEntry:
    """One model of `gpudl train NAME` / `gpudl predict RUN`.

    train(args) -> exit status: data, model and training from the parsed arguments (args.dev is the device; the
        options this model does not take are refused before it runs, and those left at None mean its defaults).
    build(model_args) -> model: the untrained model a run's report.json config["model_args"] describes.
    predict(args, model, config, device) -> exit status: `gpudl predict` with the trained model in eval mode.
    train_options / predict_options: the options only this model takes (the parser joins shared flags' helps).
    load(model_path, config, device) -> model: the trained model of a run; default: build, then gpudl.load.
    resumable: whether --resume applies (a checkpoint in the run folder).
    export(model_args) -> one sample's input shape for gpudl.onnx.export (`gpudl export`), e.g. (1, 28, 28); None
        where a model cannot be exported.
    distributed: whether --distributed applies (train reads args.comm: its loaders take shard=ranks.shard(comm)
        and fit takes comm=args.comm).
    """
    name: str
    help: str
    train: Callable
    build: Callable
    predict: Callable
    train_options: tuple = ()
    predict_options: tuple = ()
    load: Callable | None = None
    resumable: bool = True
    export: Callable | None = None
    distributed: bool = False

    def load_trained(self, model_path, config, device):
        """The trained model of a run folder, on `device`, in eval mode."""
        if self.load is not None:
            model = self.load(model_path, config, device)
        else:
            model = self.build(config["model_args"]).to(device)
            load(model, model_path)
        model.eval()
        return model
