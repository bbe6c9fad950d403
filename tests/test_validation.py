"""``_validation``: one rule per kind of value, used alike by the API, the CLI, the D-Bus service and the clients."""

import math

import numpy as np
import pytest

from imagecluster import InvalidParameter
from imagecluster._pipeline import LazyModel
from imagecluster._validation import (
    DEFAULT_BATCH_SIZE,
    MAX_WAIT_SECONDS,
    check_batch_size,
    check_count,
    check_model_name,
    check_number,
    check_seconds,
    check_sim,
    check_timeout,
    check_wait,
)
from imagecluster.cli import _build_parser
from imagecluster.cluster import cluster
from imagecluster.daemon import Indexer
from imagecluster.models import load_model
from imagecluster.plugin_api import Client

pytestmark = pytest.mark.mockbus

NOT_NUMBERS = [True, False, "0.5", b"1", None, [0.5], 1 + 0j]


@pytest.mark.parametrize("check", [check_sim, lambda v: check_number(v, "x"), check_wait,
                                   lambda v: check_seconds(v, "x"), lambda v: check_count(v, "x")])
@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_booleans_and_strings_are_not_numbers(check, value):
    with pytest.raises(InvalidParameter):
        check(value)


def test_numbers_come_back_as_python_numbers():
    assert type(check_sim(np.float32(0.5))) is float and check_sim(1) == 1.0 and check_sim(0) == 0.0
    assert type(check_count(np.int64(3), "n")) is int and check_batch_size(8) == 8
    assert check_seconds(0, "settle", zero_ok=True) == 0.0 and check_timeout(None) is None
    assert check_timeout(math.inf) == math.inf and check_wait(MAX_WAIT_SECONDS) == 3600.0


@pytest.mark.parametrize("check, value", [
    (check_sim, math.nan), (check_sim, -0.01), (check_sim, 1.01), (check_wait, math.nan), (check_wait, 3600.5),
    (check_timeout, 0), (check_timeout, math.nan), (lambda v: check_seconds(v, "x"), 0),
    (lambda v: check_seconds(v, "x"), math.inf), (check_batch_size, 0), (check_batch_size, 2.0),
])
def test_out_of_range(check, value):
    with pytest.raises(InvalidParameter):
        check(value)


def test_the_model_name_is_checked_once_everywhere(tmp_path):
    messages = set()
    for make in (lambda: check_model_name("resnet"), lambda: load_model("resnet"), lambda: LazyModel("resnet"),
                 lambda: Indexer([tmp_path], model="resnet")):
        with pytest.raises(InvalidParameter) as raised:
            make()
        messages.add(str(raised.value))
    assert messages == {"unknown model 'resnet'; choose one of lite0, vgg16"}


def test_the_public_api_applies_the_rules():
    fps = np.eye(3, dtype=np.float32)
    with pytest.raises(InvalidParameter):
        cluster(fps, sim=True)
    with pytest.raises(InvalidParameter):
        cluster(fps, sim="0.5")
    with pytest.raises(InvalidParameter):
        Client(timeout="25")


def test_the_command_line_converts_typed_text_first():
    parse = _build_parser().parse_args
    assert parse(["remote", "cluster", "--sim", "0.5"]).sim == 0.5
    assert parse(["remote", "wait", "3600"]).seconds == MAX_WAIT_SECONDS
    for argv in (["remote", "cluster", "--sim", "nan"], ["remote", "cluster", "--sim", "1.5"],
                 ["remote", "wait", "3601"], ["remote", "status", "--timeout", "0"]):
        with pytest.raises(SystemExit):
            parse(argv)


def test_each_constant_is_defined_once():
    from imagecluster import _store_files, images
    from imagecluster._pipeline import DEFAULT_BATCH_SIZE as pipeline_batch
    from imagecluster.daemon._config import Config
    from imagecluster.models._common import BATCH_SIZE as model_batch
    from imagecluster.plugin_api import _base

    assert _store_files.FOLDER_NAME is images.STORE_DIRNAME
    assert pipeline_batch is DEFAULT_BATCH_SIZE and model_batch is DEFAULT_BATCH_SIZE
    assert Config.__dataclass_fields__["batch_size"].default is DEFAULT_BATCH_SIZE
    assert _base.check_wait is check_wait and _base.check_timeout is check_timeout
