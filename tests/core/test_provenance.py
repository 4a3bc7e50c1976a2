"""One provenance schema for every layer; core never imports torch to fill it."""

import json
import subprocess
import sys

from drivelab.core.provenance import git_commit, hardware_summary, machine_info

KEYS = {"timestamp_utc", "command", "platform", "python", "cpu", "cpu_count", "cpu_affinity",
        "git_commit", "packages", "torch_threads", "cuda"}


def test_machine_info_has_one_schema_with_and_without_torch():
    code = ("import json, sys; from drivelab.core.provenance import machine_info; "
            "info = machine_info(); assert 'torch' not in sys.modules; print(json.dumps(info))")
    without = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                        check=True).stdout)
    assert set(without) == KEYS and without["torch_threads"] is None and without["cuda"] is None
    import torch

    with_torch = machine_info()
    assert set(with_torch) == KEYS
    assert with_torch["torch_threads"] == torch.get_num_threads()
    assert with_torch["cuda"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)


def test_git_commit_is_a_string_naming_the_checkout_state():
    commit = git_commit()
    assert commit == "unknown" or len(commit.removesuffix("-dirty")) == 40
    assert "CPUs" in hardware_summary()
