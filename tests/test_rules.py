"""Rules the code keeps, checked by reading it: layers (gpudl/nn) and models (gpudl/models) do their math through
gpudl.functional, never through numpy/cupy calls of their own (allocation and type questions aside): that is what
lets a recorded step hold every op of a layer, and what keeps the device out of the layers."""
import ast
import pathlib

import pytest

import gpudl

ROOT = pathlib.Path(gpudl.__file__).parent
WALKED = sorted(p for folder in ("nn", "models") for p in (ROOT / folder).glob("*.py"))
ARRAY_MODULES = {"numpy", "np", "cupy", "xp"}
# What a layer may ask of the array module itself: making arrays, and questions about types.
ALLOWED = {"empty", "empty_like", "zeros", "zeros_like", "full", "asarray", "array", "ascontiguousarray", "dtype",
           "issubdtype", "iinfo", "finfo", "result_type", "random", "ndarray", "float32", "float64", "int64",
           "integer", "floating"}


def array_module_calls(path):
    """(line, 'module.function') for every call of a function of an array module in the file at `path`: through
    the names numpy/np/cupy/xp, and any name bound to get_array_module(...)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    bound = set(ARRAY_MODULES)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                getattr(node.value.func, "id", getattr(node.value.func, "attr", None)) == "get_array_module":
            bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            chain, owner = [], node.func
            while isinstance(owner, ast.Attribute):            # numpy.linalg.norm: chain [linalg, norm]
                chain.insert(0, owner.attr)
                owner = owner.value
            head = owner.func if isinstance(owner, ast.Call) else owner     # get_array_module(x).tanh(...)
            name = getattr(head, "id", None)
            if name in bound or name == "get_array_module":
                found.append((node.lineno, ".".join([name] + chain)))
    return found


@pytest.mark.parametrize("path", WALKED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_layers_and_models_do_their_math_through_functional(path):
    math_calls = [(line, call) for line, call in array_module_calls(path) if call.split(".")[1] not in ALLOWED]
    assert not math_calls, f"{path}: array math outside gpudl.functional at {math_calls}"


def test_the_walk_finds_what_it_must(tmp_path):
    """The check itself: each way of reaching the array module is caught."""
    source = tmp_path / "layer.py"
    source.write_text("xp = get_array_module(x)\nxp.tanh(a, out=h)\nnumpy.exp(z)\nget_array_module(x).multiply(a, b)\n"
                      "np.linalg.norm(v)\nmodule = get_array_module(y)\nmodule.zeros(3)\n")
    calls = array_module_calls(source)
    assert [c for c in calls if c[1].split(".")[1] not in ALLOWED] == [
        (2, "xp.tanh"), (3, "numpy.exp"), (4, "get_array_module.multiply"), (5, "np.linalg.norm")]
    assert (7, "module.zeros") in calls
