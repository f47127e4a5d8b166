"""``repp2p tee probe`` against fake /sys and /dev trees (and this machine)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from repp2p.cli import main
from repp2p.tee.configfs_tsm import REPORT_DIR
from repp2p.tee.probe import missing_interface_message, probe
from repp2p.tee.vsock import vsock_family

from .fake_snp import FakeSnpKernel, TestAmdChain


@pytest.fixture(scope="module")
def chain() -> TestAmdChain:
    return TestAmdChain.generate()


def test_empty_tree_explains_every_missing_kind(tmp_path: Path) -> None:
    result = probe(tmp_path)
    assert result.usable_kinds == ()
    assert not any(i.present for i in result.interfaces)
    assert "configfs is not mounted" in result.interface("configfs-tsm").detail
    assert "modprobe sev-guest" in result.interface("sev-guest").detail
    assert "Nitro" in result.kind("nitro").why
    text = result.describe()
    assert "no TEE is usable here" in text and "simulated enclave" in text


def test_configfs_without_tsm_names_the_kernel_requirement(tmp_path: Path) -> None:
    (tmp_path / "sys/kernel/config").mkdir(parents=True)
    detail = probe(tmp_path).interface("configfs-tsm").detail
    assert "Linux >= 6.7" in detail and "CONFIG_TSM_REPORTS" in detail


def test_sev_guest_provider_makes_sev_snp_usable(tmp_path: Path, chain: TestAmdChain) -> None:
    kernel = FakeSnpKernel(tmp_path, chain)
    result = probe(tmp_path, files=kernel)
    tsm = result.interface("configfs-tsm")
    assert tsm.present and tsm.provider == "sev_guest"
    assert result.usable_kinds == ("sev-snp",)
    assert result.kind("sev-snp").via == "configfs-tsm"
    assert list((tmp_path / REPORT_DIR).iterdir()) == []  # the probe entry was removed


def test_tdx_provider_makes_dcap_usable(tmp_path: Path, chain: TestAmdChain) -> None:
    kernel = FakeSnpKernel(tmp_path, chain)
    kernel.provider = "tdx_guest"
    result = probe(tmp_path, files=kernel)
    assert result.interface("configfs-tsm").provider == "tdx_guest"
    assert result.usable_kinds == ("dcap",)
    assert result.kind("dcap").via == "configfs-tsm"
    assert "not sev_guest" in result.kind("sev-snp").why


@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe\x00garbage", b"x" * 10_000, b"sev guest with spaces"],
    ids=["empty", "binary", "huge", "spaces"],
)
def test_odd_provider_files_never_crash(
    tmp_path: Path, chain: TestAmdChain, content: bytes
) -> None:
    kernel = FakeSnpKernel(tmp_path, chain)
    original = kernel.mkdir

    def mkdir(path: Path) -> None:
        original(path)
        (path / "provider").write_bytes(content)

    kernel.mkdir = mkdir  # type: ignore[method-assign]
    tsm = probe(tmp_path, files=kernel).interface("configfs-tsm")
    assert not tsm.present and tsm.detail


def test_plain_report_dir_without_a_kernel(tmp_path: Path) -> None:
    # A directory named like configfs-tsm that does not behave like it (no attributes).
    (tmp_path / REPORT_DIR).mkdir(parents=True)
    tsm = probe(tmp_path).interface("configfs-tsm")
    assert not tsm.present and "cannot read provider" in tsm.detail


def test_device_nodes_and_odd_devices(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/sev-guest").write_bytes(b"")
    (tmp_path / "dev/tdx_guest").write_bytes(b"")
    (tmp_path / "dev/nsm").mkdir()  # a directory where a device should be
    (tmp_path / "dev/nvidia0").write_bytes(b"")
    (tmp_path / "dev/nvidiactl").write_bytes(b"")
    result = probe(tmp_path)
    assert result.interface("sev-guest").present
    snp = result.kind("sev-snp")  # no configfs-tsm: the /dev/sev-guest ioctl serves
    assert snp.usable and snp.via == "sev-guest"
    tdx = result.kind("dcap")  # a TDREPORT, made a quote by the host's quote service
    assert tdx.usable and tdx.via.startswith("tdx-guest") and "quote service" in tdx.via
    assert "not a character device" in result.interface("nsm").detail
    assert not result.kind("nitro").usable and "Nitro Enclaves" in result.kind("nitro").why
    gpu = result.interface("nvidia-gpu")
    assert gpu.present and "1 GPU" in gpu.detail and "conf-compute" in gpu.detail
    assert result.kind("nvidia").usable  # next to the SEV-SNP VM's evidence
    for name in ("sev-guest", "tdx_guest"):
        (tmp_path / "dev" / name).unlink()
    alone = probe(tmp_path).kind("nvidia")
    assert not alone.usable and "confidential VM" in alone.why
    for name in ("sev-guest", "tdx_guest"):
        (tmp_path / "dev" / name).write_bytes(b"")
    strict = probe(tmp_path, plain_files_as_devices=False)
    assert not strict.interface("sev-guest").present


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_unreadable_device_says_who_cannot(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/tdx_guest").write_bytes(b"")
    (tmp_path / "dev/tdx_guest").chmod(0)
    detail = probe(tmp_path).interface("tdx-guest").detail
    assert f"uid {os.getuid()}" in detail and "grant access" in detail


def test_missing_interface_message_points_at_probe(tmp_path: Path) -> None:
    message = missing_interface_message("sev-snp", probe(tmp_path))
    assert "sev-snp" in message and "repp2p tee probe" in message


def test_cli_json_and_exit_codes(tmp_path: Path, chain: TestAmdChain, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["tee", "probe", "--json", "--root", str(tmp_path)]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["usable_kinds"] == []
    names = {i["name"] for i in data["interfaces"]}
    assert names == {"configfs-tsm", "sev-guest", "tdx-guest", "nsm", "nitro-enclaves",
                     "nvidia-gpu"}  # fmt: skip
    assert main(["tee", "probe", "--root", str(tmp_path)]) == 2
    assert "no TEE is usable here" in capsys.readouterr().out


def test_this_machine_has_no_tee(capsys) -> None:  # type: ignore[no-untyped-def]
    """The development machine has no TEE: the probe says so (skip on a real CVM)."""
    result = probe("/", create_entry=False)
    if result.usable_kinds:
        pytest.skip(f"this machine offers {result.usable_kinds}")
    assert main(["tee", "probe", "--no-entry"]) == 2
    assert "no TEE is usable here" in capsys.readouterr().out


def test_nitro_inside_the_enclave_and_on_the_parent(tmp_path: Path) -> None:
    (tmp_path / "enclave/dev").mkdir(parents=True)
    (tmp_path / "enclave/dev/nsm").write_bytes(b"")
    inside = probe(tmp_path / "enclave").kind("nitro")
    assert inside.usable and inside.via == "nsm"
    (tmp_path / "parent/dev").mkdir(parents=True)
    (tmp_path / "parent/dev/nitro_enclaves").write_bytes(b"")
    parent = probe(tmp_path / "parent").kind("nitro")
    if vsock_family() is None:
        assert not parent.usable and "AF_VSOCK" in parent.why
    else:
        assert parent.usable and parent.via.startswith("vsock")
