"""Every public callable names each of its parameters in a numpydoc Parameters section.

In the spirit of scikit-learn's ``test_docstring_parameters.py``, over
everything in ``imagecluster.__all__`` and ``imagecluster.plugin_api.__all__``:
functions, classes (their constructor's parameters, in the class docstring)
and the public methods of classes. A dataclass may list its fields under
Attributes instead. An ``AsyncClient`` method that only points to its
``Client`` twin must have the twin's exact signature, and the twin documents
the parameters.
"""

import dataclasses
import inspect
import re

import pytest

import imagecluster
import imagecluster.plugin_api as plugin_api

pytestmark = pytest.mark.mockbus

_SECTION = re.compile(r"^(?P<title>[A-Z][A-Za-z ]+)\n-{3,}\n", re.M)


def sections(doc):
    """``{title: body}`` of a numpydoc docstring."""
    doc = inspect.cleandoc(doc or "")
    found = list(_SECTION.finditer(doc))
    return {m["title"]: doc[m.end(): found[i + 1].start() if i + 1 < len(found) else len(doc)]
            for i, m in enumerate(found)}


def documented(body):
    """The names a Parameters (or Attributes) section describes: its unindented ``name : type`` lines."""
    names = set()
    for line in body.splitlines():
        if line and not line[0].isspace():
            head = line.split(" : ")[0]
            names.update(n.strip().lstrip("*") for n in head.split(","))
    return names


def parameters(function):
    return [name for name in inspect.signature(function).parameters if name not in ("self", "cls")]


def public_callables():
    for module in (imagecluster, plugin_api):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                if issubclass(obj, BaseException):
                    continue  # an exception takes its message
                yield f"{module.__name__}.{name}", obj, obj, obj.__doc__
                for method_name, method in vars(obj).items():
                    if not method_name.startswith("_") and inspect.isfunction(method):
                        yield f"{module.__name__}.{name}.{method_name}", obj, method, method.__doc__
            elif callable(obj):
                yield f"{module.__name__}.{name}", None, obj, obj.__doc__


CALLABLES = sorted({label: (owner, obj, doc) for label, owner, obj, doc in public_callables()}.items())


@pytest.mark.parametrize("label, target", CALLABLES, ids=[label for label, _ in CALLABLES])
def test_parameters_are_documented(label, target):
    owner, obj, doc = target
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj):
            wanted = [f.name for f in dataclasses.fields(obj)]
            body = sections(doc).get("Parameters", "") + sections(doc).get("Attributes", "")
        else:
            wanted = parameters(obj.__init__) if "__init__" in vars(obj) else []
            body = sections(doc).get("Parameters", "")
    else:
        wanted = parameters(obj)
        body = sections(doc).get("Parameters", "")
        if owner is plugin_api.AsyncClient and wanted and not body:  # "see Client.x": the twin documents it
            twin = getattr(plugin_api.Client, obj.__name__)
            assert inspect.signature(twin) == inspect.signature(obj), f"{label} differs from its Client twin"
            body = sections(twin.__doc__).get("Parameters", "")
    assert doc and doc.strip(), f"{label} has no docstring"
    missing = [name for name in wanted if name not in documented(body)]
    assert not missing, f"{label}: no numpydoc entry for {missing}"


def test_the_walk_finds_the_public_surface():
    labels = {label for label, _ in CALLABLES}
    assert {"imagecluster.cluster_folder", "imagecluster.Store.put", "imagecluster.plugin_api.Client.cluster",
            "imagecluster.plugin_api.AsyncClient.similar"} <= labels
    assert len(labels) > 40
