"""What TEE interfaces this machine offers, and why the missing ones are missing.

``probe(root)`` looks under ``root`` (``/`` on a real machine; a temp dir holding a fake
``sys/`` and ``dev/`` tree in tests) for the interfaces the hardware backends use:

* configfs-tsm (``sys/kernel/config/tsm/report``): Linux >= 6.7 confidential-guest reports;
  a fresh entry's ``provider`` says which guest driver answers (``sev_guest``, ``tdx_guest``);
* ``dev/sev-guest`` (SEV-SNP guest driver), ``dev/tdx_guest`` (TDX guest driver),
  ``dev/nsm`` (AWS Nitro Security Module, inside an enclave), ``dev/nitro_enclaves`` (the
  Nitro Enclaves driver on the parent instance), ``dev/nvidia<N>`` (NVIDIA GPUs; whether their
  confidential-computing mode is on needs NVML, which the probe does not load).

Everything read is hostile (a fake tree, a half-loaded driver): every odd file becomes a
line of explanation, never an exception. The probe never writes except to create and
remove one configfs-tsm entry (that is how the kernel says which provider answers), and
only when ``create_entry`` is true.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import stat
from pathlib import Path

from repp2p.tee.configfs_tsm import TsmFiles
from repp2p.tee.vsock import vsock_family

#: configfs-tsm ``provider`` value -> the attestation kind its reports verify as.
PROVIDER_KINDS = {"sev_guest": "sev-snp", "tdx_guest": "dcap"}
#: TEE kinds (``tee_kind``) this release can run a node on, and through what.
RUNNABLE = {
    "sev-snp": "configfs-tsm or /dev/sev-guest",
    "dcap": "configfs-tsm or /dev/tdx_guest with the host's quote service",
    "nitro": "/dev/nsm in the enclave, vsock on the parent",
}
TSM_REPORT = "sys/kernel/config/tsm/report"
CONFIGFS = "sys/kernel/config"
_MAX_ATTR = 256  # bytes read from a configfs attribute: provider names are short
_PROBE_HINT = "run `repp2p tee probe` on the machine for details"


@dataclasses.dataclass(frozen=True)
class Interface:
    """One kernel interface and what the probe found there.

    Attributes:
        name: ``configfs-tsm``, ``sev-guest``, ``tdx-guest``, ``nsm``, ``nitro-enclaves``
            or ``nvidia-gpu``.
        path: where it was looked for (absolute, under the probe root).
        present: it exists and looks usable by this process.
        detail: what was found, or why it is not usable, in words an operator can act on.
        provider: for configfs-tsm, the provider a new entry reported ("" if unknown).
    """

    name: str
    path: str
    present: bool
    detail: str
    provider: str = ""


@dataclasses.dataclass(frozen=True)
class KindStatus:
    """Whether a node can run with ``tee_kind = kind`` here.

    Attributes:
        kind: the TEE kind (as in ``Attestation.tee_kind``).
        label: a human name (``AMD SEV-SNP``...).
        usable: this release can produce this kind's evidence on this machine.
        via: the interface it would use ("" when unusable).
        why: when unusable, why, and what to do about it.
    """

    kind: str
    label: str
    usable: bool
    via: str
    why: str


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """The probe's findings: interfaces seen and TEE kinds usable."""

    root: str
    interfaces: tuple[Interface, ...]
    kinds: tuple[KindStatus, ...]

    @property
    def usable_kinds(self) -> tuple[str, ...]:
        return tuple(k.kind for k in self.kinds if k.usable)

    def interface(self, name: str) -> Interface:
        return next(i for i in self.interfaces if i.name == name)

    def kind(self, kind: str) -> KindStatus:
        return next(k for k in self.kinds if k.kind == kind)

    def to_json_dict(self) -> dict:
        return {
            "root": self.root,
            "usable_kinds": list(self.usable_kinds),
            "interfaces": [dataclasses.asdict(i) for i in self.interfaces],
            "kinds": [dataclasses.asdict(k) for k in self.kinds],
        }

    def describe(self) -> str:
        """Several lines for a person."""
        lines = [f"TEE probe of {self.root}", "", "interfaces:"]
        for i in self.interfaces:
            mark = "present" if i.present else "absent "
            lines.append(f"  {i.name:<15} {mark}  {i.path}")
            lines.append(f"  {'':<15}          {i.detail}")
        lines += ["", "TEE kinds (tee_kind):"]
        for k in self.kinds:
            state = f"usable via {k.via}" if k.usable else "not usable"
            lines.append(f"  {k.kind:<8} {k.label:<22} {state}")
            if not k.usable:
                lines.append(f"  {'':<8} {'':<22} {k.why}")
        lines.append("")
        if self.usable_kinds:
            lines.append(f"usable here: {', '.join(self.usable_kinds)}")
        else:
            lines.append(
                "no TEE is usable here: this machine can run only the simulated enclave, "
                "and only on the dev network"
            )
        return "\n".join(lines)


def _read_attr(files: TsmFiles, path: Path) -> tuple[str | None, str]:
    """A short text attribute: ``(value, "")`` or ``(None, why)``; never raises."""
    try:
        raw = files.read(path, _MAX_ATTR)
    except OSError as exc:
        return None, f"cannot read {path.name}: {exc.strerror or type(exc).__name__}"
    text = raw.decode("ascii", "replace").strip()
    if not text or not all(c.isalnum() or c in "_-." for c in text):
        return None, f"{path.name} holds {text[:40]!r}, not a provider name"
    return text, ""


def _probe_tsm(root: Path, create_entry: bool, files: TsmFiles) -> Interface:
    report = root / TSM_REPORT
    where = str(report)
    if not (root / CONFIGFS).is_dir():
        return Interface(
            "configfs-tsm",
            where,
            False,
            "configfs is not mounted at /sys/kernel/config "
            "(`mount -t configfs none /sys/kernel/config`), or the kernel lacks CONFIG_CONFIGFS_FS",
        )
    if not report.is_dir():
        return Interface(
            "configfs-tsm",
            where,
            False,
            "no TSM reports in configfs: needs Linux >= 6.7 with CONFIG_TSM_REPORTS, inside a "
            "confidential VM whose guest driver (sev-guest or tdx-guest) is loaded",
        )
    if not os.access(report, os.W_OK | os.X_OK):
        return Interface(
            "configfs-tsm",
            where,
            False,
            f"present but this user (uid {os.getuid()}) cannot create report entries: "
            "run the node as root or give its user write access to this directory",
        )
    if not create_entry:
        return Interface("configfs-tsm", where, True, "present (provider not checked)")
    entry = report / f"repp2p-probe-{secrets.token_hex(4)}"
    try:
        files.mkdir(entry)
    except OSError as exc:
        return Interface(
            "configfs-tsm",
            where,
            False,
            f"cannot create a report entry: {exc.strerror or type(exc).__name__} "
            "(no guest driver registered as provider?)",
        )
    try:
        provider, why = _read_attr(files, entry / "provider")
    finally:
        try:
            files.rmdir(entry)
        except OSError:
            pass  # a leftover probe entry is harmless; never fail the probe for it
    if provider is None:
        return Interface("configfs-tsm", where, False, why)
    if provider not in PROVIDER_KINDS:
        return Interface(
            "configfs-tsm",
            where,
            False,
            f"provider {provider!r} is not one repp2p knows (sev_guest, tdx_guest)",
            provider,
        )
    return Interface(
        "configfs-tsm", where, True, f"provider {provider} ({PROVIDER_KINDS[provider]})", provider
    )


def _probe_device(root: Path, name: str, rel: str, missing: str, plain_ok: bool) -> Interface:
    path = root / rel
    try:
        st = path.stat()
    except FileNotFoundError:
        return Interface(name, str(path), False, missing)
    except OSError as exc:
        return Interface(name, str(path), False, f"cannot stat: {exc.strerror or exc}")
    if not stat.S_ISCHR(st.st_mode) and not (plain_ok and stat.S_ISREG(st.st_mode)):
        return Interface(name, str(path), False, "exists but is not a character device")
    if not os.access(path, os.R_OK | os.W_OK):
        return Interface(
            name,
            str(path),
            False,
            f"present but not readable and writable by this user (uid {os.getuid()}): run as "
            "root or grant access (e.g. a udev rule)",
        )
    return Interface(name, str(path), True, "present")


def _probe_gpus(root: Path, plain_ok: bool) -> Interface:
    dev = root / "dev"
    try:
        names = sorted(
            p.name for p in dev.iterdir() if p.name.startswith("nvidia") and p.name[6:].isdigit()
        )
    except OSError:
        names = []
    if not names:
        return Interface("nvidia-gpu", str(dev / "nvidia0"), False, "no NVIDIA GPU device nodes")
    first = _probe_device(root, "nvidia-gpu", f"dev/{names[0]}", "", plain_ok)
    if not first.present:
        return first
    return Interface(
        "nvidia-gpu",
        first.path,
        True,
        f"{len(names)} GPU device(s); confidential-computing mode is not checked "
        "(`nvidia-smi conf-compute -f` says whether it is on)",
    )


def probe(
    root: str | Path = "/",
    *,
    create_entry: bool = True,
    plain_files_as_devices: bool | None = None,
    files: TsmFiles | None = None,
) -> ProbeResult:
    """Probe ``root`` for TEE interfaces. Never raises for anything found on disk.

    Args:
        root: the filesystem root to look under (tests pass a fake tree).
        create_entry: create (and remove) one configfs-tsm entry to learn its provider.
        plain_files_as_devices: accept regular files where device nodes are expected (a
            fake tree cannot hold device nodes without root); default: only when ``root``
            is not ``/``.
        files: configfs-tsm file operations (tests: a fake kernel).
    """
    root = Path(root)
    plain_ok = (
        root.resolve() != Path("/")
        if plain_files_as_devices is None
        else bool(plain_files_as_devices)
    )
    tsm = _probe_tsm(root, create_entry, files or TsmFiles())
    sev = _probe_device(
        root, "sev-guest", "dev/sev-guest",
        "no SEV-SNP guest device: not an SEV-SNP VM, or the sev-guest module is not loaded "
        "(`modprobe sev-guest`)",
        plain_ok,
    )  # fmt: skip
    tdx = _probe_device(
        root, "tdx-guest", "dev/tdx_guest",
        "no TDX guest device: not a TDX VM, or the tdx_guest module is not loaded "
        "(`modprobe tdx_guest`)",
        plain_ok,
    )  # fmt: skip
    nsm = _probe_device(
        root, "nsm", "dev/nsm",
        "no Nitro Security Module: not inside an AWS Nitro Enclave (the parent instance has "
        "none; the enclave image runs the node's enclave process)",
        plain_ok,
    )  # fmt: skip
    parent = _probe_device(
        root, "nitro-enclaves", "dev/nitro_enclaves",
        "no Nitro Enclaves driver: not an EC2 instance with enclave support enabled, or the "
        "Nitro Enclaves CLI (aws-nitro-enclaves-cli) is not installed",
        plain_ok,
    )  # fmt: skip
    gpu = _probe_gpus(root, plain_ok)
    interfaces = (tsm, sev, tdx, nsm, parent, gpu)
    return ProbeResult(str(root), interfaces, _kinds(tsm, sev, tdx, nsm, parent, gpu))


def _cvm_status(
    kind: str, label: str, provider: str, tsm: Interface, device: Interface, via_device: str
) -> KindStatus:
    """A confidential VM kind: usable through configfs-tsm answered by ``provider``, or
    through its guest device when configfs-tsm is absent."""
    if tsm.present and tsm.provider == provider:
        return KindStatus(kind, label, True, "configfs-tsm", "")
    if tsm.present:
        why = f"configfs-tsm answers with provider {tsm.provider!r}, not {provider}"
        return KindStatus(kind, label, False, "", why)
    if device.present:
        return KindStatus(kind, label, True, via_device, "")
    return KindStatus(
        kind, label, False, "", f"configfs-tsm: {tsm.detail}; {device.name}: {device.detail}"
    )


def _nitro_status(nsm: Interface, parent: Interface) -> KindStatus:
    label = "AWS Nitro Enclave"
    if nsm.present:  # inside the enclave: run the enclave process here
        return KindStatus("nitro", label, True, "nsm", "")
    if parent.present:
        if vsock_family() is None:
            why = "the Nitro Enclaves driver is here but this Python has no AF_VSOCK"
            return KindStatus("nitro", label, False, "", why)
        return KindStatus("nitro", label, True, "vsock (parent instance)", "")
    return KindStatus("nitro", label, False, "", f"{nsm.detail}; {parent.detail}")


def _kinds(
    tsm: Interface, sev: Interface, tdx: Interface, nsm: Interface, parent: Interface,
    gpu: Interface,
) -> tuple[KindStatus, ...]:  # fmt: skip
    snp = _cvm_status("sev-snp", "AMD SEV-SNP VM", "sev_guest", tsm, sev, "sev-guest")
    tdx_status = _cvm_status(
        "dcap", "Intel TDX VM", "tdx_guest", tsm, tdx,
        "tdx-guest + the host's quote service (vsock 2:4050)",
    )  # fmt: skip
    gpu_label = "NVIDIA CC GPU"
    if not gpu.present:
        gpu_status = KindStatus("nvidia", gpu_label, False, "", gpu.detail)
    elif snp.usable or tdx_status.usable:
        # NVML (not loaded here) says at start whether CC mode is on; the node refuses then.
        gpu_status = KindStatus("nvidia", gpu_label, True, 'NVML (gpu = "nvidia")', "")
    else:
        gpu_status = KindStatus(
            "nvidia", gpu_label, False, "",
            "GPU devices are present, but GPU evidence is accepted only next to a "
            "confidential VM's (sev-snp or dcap), and neither is usable here",
        )  # fmt: skip
    return (snp, tdx_status, _nitro_status(nsm, parent), gpu_status)


def missing_interface_message(kind: str, result: ProbeResult) -> str:
    """One line for a ConfigError/EnclaveError: what ``kind`` lacks here, and where to look."""
    try:
        status = result.kind(kind)
    except StopIteration:
        return f"tee_kind {kind!r} has no hardware runtime in this release; {_PROBE_HINT}"
    return f"tee_kind {kind!r} is not usable here: {status.why}; {_PROBE_HINT}"
