"""Which GPU a process runs on, from recorded NVML answers (tests/data/nvml/): the GPUs of one host
are one fingerprint and one fleet group whatever CUDA_VISIBLE_DEVICES or NVIDIA_VISIBLE_DEVICES
say; a MIG slice is not the whole board; a fleet node lists its GPUs and MIG instances by UUID.

The fingerprints are this machine's real capture with the GPU section replayed from a recording
and the variables set as a process with them would record them.
"""

from __future__ import annotations

import copy
import json

import pytest
from nvml_replay import FakeNVML, load_recording

from envaudit.fingerprint import capture, gpu
from envaudit.fingerprint.diff import diff
from envaudit.fingerprint.identity import fingerprint_id
from envaudit.fingerprint.types import Fingerprint
from envaudit.fleet.cluster import _gpus
from envaudit.fleet.node import visible_gpus
from envaudit.fleet.report import NodePlace, build_report, parse_node
from envaudit.render import fleet_json

H100 = "h100_sxm5_x2.json"
A100_MIG = "a100_sxm4_mig.json"
H100_UUIDS = ("GPU-5d8a1c1e-3f0e-8b9a-6f52-1c3e9a7d2b40",
              "GPU-a07c44f2-91d6-2e3b-c8f0-77b1d5e6a913")
MIG_3G = "MIG-9d1e3c5a-7b2f-5e40-a8c6-1f3d5b7e9a02"
MIG_1G = ("MIG-4a6c8e0b-2d4f-5a1c-9e3b-5d7f9b1c3e04", "MIG-c2e4a6b8-0d1f-5b3a-8c5e-7f9b1d3e5a06")


@pytest.fixture(scope="module")
def here() -> dict:
    return capture().to_dict()


def fingerprint(base: dict, recording: dict | str, environ: dict[str, str]) -> Fingerprint:
    """``base`` as a process with ``environ`` on the recorded host would capture it."""
    data = copy.deepcopy(base)
    if isinstance(recording, str):
        recording = load_recording(recording)
    data["gpu"] = gpu.probe(FakeNVML(recording), environ=environ)
    data["env"] = {**data["env"], **environ}
    data["fingerprint_id"] = fingerprint_id(data)
    return Fingerprint(data)


def whole_a100() -> dict:
    """The MIG host's board with MIG mode off: one process on the whole GPU."""
    recording = load_recording(A100_MIG)
    board = recording["devices"][0]
    board["nvmlDeviceGetMigMode"] = [0, 0]
    del board["mig_devices"], board["nvmlDeviceGetMaxMigDeviceCount"]
    return recording


# --- one host, one fingerprint ------------------------------------------------------------------


SAME_H100 = [
    {"CUDA_VISIBLE_DEVICES": "0"},
    {"CUDA_VISIBLE_DEVICES": "1"},
    {"CUDA_VISIBLE_DEVICES": H100_UUIDS[1], "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
    {"NVIDIA_VISIBLE_DEVICES": H100_UUIDS[0]},  # a Kubernetes pod given one GPU
    {},
]


def test_the_gpus_of_one_host_are_one_fingerprint(here):
    prints = [fingerprint(here, H100, environ) for environ in SAME_H100]
    assert len({fp.fingerprint_id for fp in prints}) == 1
    changes = diff(prints[0], prints[1])
    assert [c.path for c in changes if c.path.startswith("env.")] == ["env.CUDA_VISIBLE_DEVICES"]
    assert not [c for c in changes if c.numerics]  # informational: no finding, no cause
    # What is selected still counts: a process that CUDA_VISIBLE_DEVICES keeps off every GPU
    # computes on the CPU.
    hidden = fingerprint(here, H100, {"CUDA_VISIBLE_DEVICES": "-1"})
    assert hidden.fingerprint_id != prints[0].fingerprint_id
    assert "gpu.cuda_devices.0.name" in {c.path for c in diff(prints[0], hidden) if c.numerics}


def test_the_gpus_of_one_host_are_one_fleet_group(here):
    nodes = []
    for n, environ in enumerate(SAME_H100[:4]):
        place = NodePlace("gpu-a", "tcp://10.0.0.2:4000", H100_UUIDS[n % 2], str(n % 2))
        answer = {"fingerprint": fingerprint(here, H100, environ).to_json(), "seconds": 0.2}
        nodes.append(parse_node(place, answer, "fingerprint"))
    report = build_report("fingerprint", nodes, "", "", 0, 1.0)
    assert len(report.groups) == 1
    assert report.groups[0].nodes == ("gpu-a GPU 0", "gpu-a GPU 1", "gpu-a GPU 0", "gpu-a GPU 1")
    assert "config_drift" not in report.findings


def test_another_gpu_model_is_another_fingerprint(here):
    # Selection does not hide hardware: the first device the process computes on counts.
    h100 = fingerprint(here, H100, {"CUDA_VISIBLE_DEVICES": "0"})
    geforce = fingerprint(here, "rtx4090_geforce.json", {"CUDA_VISIBLE_DEVICES": "0"})
    assert h100.fingerprint_id != geforce.fingerprint_id


# --- MIG ------------------------------------------------------------------------------------------


def test_a_mig_board_records_its_instances():
    board = gpu.probe(FakeNVML(load_recording(A100_MIG)), environ={})["devices"][0]
    assert board["mig_mode"] == {"current": "enabled", "pending": "enabled"}
    assert [(m["profile"], m["multiprocessor_count"], m["memory_total_bytes"] >> 20,
             m["gpu_instance_id"]) for m in board["mig_devices"]] == [
        ("3g.40gb", 42, 40192, 2), ("1g.10gb", 14, 9728, 9), ("1g.10gb", 14, 9728, 10)]
    assert [m["uuid"] for m in board["mig_devices"]] == [MIG_3G, *MIG_1G]
    assert board["mig_devices"][1]["name"] == "NVIDIA A100-SXM4-80GB MIG 1g.10gb"
    # A board out of MIG mode makes no MIG call at all.
    fake = FakeNVML(whole_a100())
    assert "mig_devices" not in gpu.probe(fake, environ={})["devices"][0]
    assert not [c for c in fake.calls if "Mig" in c and c != "nvmlDeviceGetMigMode"]


def test_a_failing_mig_call_is_a_reason_and_the_board_still_reads():
    recording = load_recording(A100_MIG)
    recording["devices"][0]["mig_devices"][1] = {"nvml_error": "NVML_ERROR_NO_PERMISSION"}
    board = gpu.probe(FakeNVML(recording), environ={})["devices"][0]
    assert board["mig_devices"][1] == {
        "available": False,
        "reason": "nvmlDeviceGetMigDeviceHandleByIndex: Insufficient Permissions"}
    assert [m["uuid"] for m in board["mig_devices"] if "uuid" in m] == [MIG_3G, MIG_1G[1]]
    assert board["name"] == "NVIDIA A100-SXM4-80GB"


def test_a_1g_slice_is_not_the_whole_gpu(here):
    whole = fingerprint(here, whole_a100(), {})
    slices = [fingerprint(here, A100_MIG, {"CUDA_VISIBLE_DEVICES": uuid}) for uuid in MIG_1G]
    three = fingerprint(here, A100_MIG, {"CUDA_VISIBLE_DEVICES": MIG_3G})
    assert slices[0].fingerprint_id == slices[1].fingerprint_id  # two alike slices: one print
    assert len({whole.fingerprint_id, slices[0].fingerprint_id, three.fingerprint_id}) == 3
    moved = {c.path: (c.golden, c.current) for c in diff(three, slices[0]) if c.numerics}
    assert moved["gpu.cuda_devices.0.multiprocessor_count"] == (42, 14)
    assert slices[0].data["gpu"]["cuda_devices"][0]["label"] == "0 MIG 1 (1g.10gb)"


def test_which_slice_is_first_unknown_is_said_not_guessed(here):
    section = gpu.probe(FakeNVML(load_recording(A100_MIG)), environ={})
    assert section["cuda_devices"]["available"] is False
    assert "select one by its UUID" in section["cuda_devices"]["reason"]


# --- fleet: select by UUID ------------------------------------------------------------------------


def test_a_host_lists_its_gpus_by_uuid_labelled_by_index():
    assert visible_gpus(FakeNVML(load_recording(H100)), {}) == {
        "gpus": [{"device": H100_UUIDS[0], "label": "0"}, {"device": H100_UUIDS[1], "label": "1"}],
        "notes": []}


def test_a_mig_host_lists_its_instances_each_by_its_mig_id():
    listed = visible_gpus(FakeNVML(load_recording(A100_MIG)), {})
    assert listed == {"gpus": [{"device": MIG_3G, "label": "0 MIG 0 (3g.40gb)"},
                               {"device": MIG_1G[0], "label": "0 MIG 1 (1g.10gb)"},
                               {"device": MIG_1G[1], "label": "0 MIG 2 (1g.10gb)"}], "notes": []}
    # The worker's own selection of the board: its instances, each by its MIG id.
    assert [g["device"] for g in visible_gpus(FakeNVML(load_recording(A100_MIG)),
                                              {"CUDA_VISIBLE_DEVICES": "0"})["gpus"]] \
        == [MIG_3G, *MIG_1G]


@pytest.mark.parametrize(("environ", "gpus", "note"), [
    # Indices in PCI order are NVML's: mapped to UUIDs, in the worker's order.
    ({"CUDA_VISIBLE_DEVICES": "1,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
     [(H100_UUIDS[1], "1"), (H100_UUIDS[0], "0")], None),
    # A unique UUID prefix, as CUDA accepts it, becomes the whole UUID.
    ({"CUDA_VISIBLE_DEVICES": "GPU-a07c44f2"}, [(H100_UUIDS[1], "1")], None),
    # CUDA's own order: which board an index names is not NVML's to say: passed on as set.
    ({"CUDA_VISIBLE_DEVICES": "1"}, [("1", "1")], "CUDA_DEVICE_ORDER=PCI_BUS_ID"),
    # A device NVML does not list: passed on, its UUID not shown in the label.
    ({"CUDA_VISIBLE_DEVICES": "GPU-00000000-dead"}, [("GPU-00000000-dead", "entry 0")],
     "NVML lists no device GPU-00000000-dead"),
    # CUDA stops at the first entry that names no device.
    ({"CUDA_VISIBLE_DEVICES": "-1,0"}, [], None),
])
def test_the_workers_own_selection_is_honoured(environ, gpus, note):
    listed = visible_gpus(FakeNVML(load_recording(H100)), environ)
    assert [(g["device"], g["label"]) for g in listed["gpus"]] == gpus
    if note is None:
        assert listed["notes"] == []
    else:
        assert len(listed["notes"]) == 1 and note in listed["notes"][0]


def test_without_nvml_the_selection_passes_through_and_says_so():
    listed = visible_gpus(FakeNVML(load_recording("driver_not_loaded.json")),
                          {"CUDA_VISIBLE_DEVICES": "2,3"})
    assert listed["gpus"] == [{"device": "2", "label": "2"}, {"device": "3", "label": "3"}]
    assert listed["notes"] == ["CUDA_VISIBLE_DEVICES=2,3 passed on as set: NVML cannot say which"
                               " devices it names (NVML: Driver Not Loaded)"]
    assert visible_gpus(FakeNVML(load_recording("driver_not_loaded.json")), {}) == {
        "gpus": [], "notes": []}


def test_a_run_is_shown_by_its_label_and_rerun_by_its_uuid():
    check = {"schema": "envaudit.check/2", "verdict": "identical",
             "current_fingerprint_id": "fp-" + "a" * 16, "headline": "x",
             "array_digests": {"probe/softmax": "aa" * 8}, "first_divergence": None, "causes": []}
    place = NodePlace("gpu-a", "tcp://10.0.0.2:4000", H100_UUIDS[1], "1")
    node = parse_node(place, {"check": json.dumps(check), "seconds": 1.0}, "check")
    assert (node.device, node.label, node.place) == ("1", "gpu-a GPU 1", place)
    page = fleet_json.render(build_report("check", [node], "g", "fp-" + "a" * 16, 0, 1.0))
    assert H100_UUIDS[1] not in page and json.loads(page)["nodes"][0]["device"] == "1"


def test_a_node_of_an_older_envaudit_lists_plain_values():
    assert _gpus({"gpus": ["0", "1"]}) == [("0", "0"), ("1", "1")]
    assert _gpus({"gpus": [{"device": H100_UUIDS[0], "label": "0"}]}) == [(H100_UUIDS[0], "0")]
    assert _gpus({"gpus": [{"device": H100_UUIDS[0]}]}) is None  # not what envaudit writes
    assert _gpus({"gpus": [""]}) is None and _gpus({"error": "x"}) is None


def test_mig_ids_are_hashed_where_a_fingerprint_is_shared(here):
    from envaudit.fingerprint.redact import hashed, redact

    fp = fingerprint(here, A100_MIG, {"CUDA_VISIBLE_DEVICES": MIG_1G[0]})
    shared = json.dumps(redact(fp.data, salt=b"salt"))
    assert not [uuid for uuid in (MIG_3G, *MIG_1G) if uuid in shared]
    # The board's list, the selection, the variable and the GPU section's copy of it.
    assert shared.count(hashed(MIG_1G[0], b"salt")) == 4


def test_a_selection_of_no_device_proves_a_cpu_run(here):
    from envaudit.attribute.reach import ran_on_cpu_only

    # CUDA stops reading at -1: "-1,0" selects nothing, as "-1" does.
    assert ran_on_cpu_only(fingerprint(here, H100, {"CUDA_VISIBLE_DEVICES": "-1,0"}))
    assert not ran_on_cpu_only(fingerprint(here, H100, {"CUDA_VISIBLE_DEVICES": "0,-1"}))
