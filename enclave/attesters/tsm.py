"""``sev-snp`` and ``tdx`` attesters through Linux's configfs-tsm report interface.

Documentation/ABI/testing/configfs-tsm: make a directory under
``/sys/kernel/config/tsm/report/``, write the 64-byte report_data to ``inblob``, read
the signed report (SEV-SNP) or quote (TDX) from ``outblob`` and, on SEV-SNP with an
extended-report capable host, the certificate table from ``auxblob``. ``generation``
is read before and after so a concurrent writer to the same entry is detected.

Collateral for offline verification is attached to the evidence: the VCEK (or VLEK)
from the host's certificate table or from ``--vcek``; for TDX, PCS collateral from a
directory given with ``--tdx-collateral``.
"""

from __future__ import annotations

import contextlib
import os
import struct
import uuid
from collections.abc import Callable
from pathlib import Path

from .base import AttesterError, Evidence

__all__ = ["TsmAttester", "parse_cert_table", "TSM_REPORT_ROOT", "SNP_CERT_GUIDS"]

TSM_REPORT_ROOT = Path("/sys/kernel/config/tsm/report")
_PROVIDERS = {"sev-snp": "sev_guest", "tdx": "tdx_guest"}
SNP_REPORT_SIZE = 1184

#: GHCB specification, "Certificate table" GUIDs for SNP extended guest requests.
SNP_CERT_GUIDS = {
    uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"): "vcek",
    uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1"): "vlek",
    uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"): "ask",
    uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"): "ark",
}
_ENTRY = struct.Struct("<16sII")


def parse_cert_table(table: bytes) -> dict[str, bytes]:
    """Decode a GHCB certificate table: ``(GUID, offset, length)`` entries up to an all-zero one.

    GUIDs are accepted in both little-endian (``bytes_le``) and big-endian layouts,
    since hosts have shipped both.
    """
    certs: dict[str, bytes] = {}
    for index in range(len(table) // _ENTRY.size):
        raw_guid, offset, length = _ENTRY.unpack_from(table, index * _ENTRY.size)
        if raw_guid == bytes(16) and offset == 0 and length == 0:
            return certs
        if offset + length > len(table):
            raise AttesterError("certificate table entry points outside the table")
        for guid in (uuid.UUID(bytes_le=raw_guid), uuid.UUID(bytes=raw_guid)):
            name = SNP_CERT_GUIDS.get(guid)
            if name is not None:
                certs[name] = table[offset : offset + length]
                break
    raise AttesterError("certificate table has no terminating entry")


class TsmAttester:
    """Request a hardware report with our report_data through configfs-tsm."""

    def __init__(
        self,
        platform: str,
        root: Path = TSM_REPORT_ROOT,
        collateral: dict[str, bytes] | None = None,
        privlevel: int | None = None,
        make_entry: Callable[[Path], None] = os.mkdir,
    ) -> None:
        if platform not in _PROVIDERS:
            raise AttesterError(f"configfs-tsm attester supports sev-snp and tdx, not {platform!r}")
        self.platform = platform
        self.root = root
        self._collateral = dict(collateral or {})
        self._privlevel = privlevel
        self._make_entry = make_entry

    @classmethod
    def from_options(
        cls,
        kind: str,
        tsm_root: Path | None = None,
        vcek: Path | None = None,
        tdx_collateral: Path | None = None,
        privlevel: int | None = None,
    ) -> TsmAttester:
        """Build from CLI-style options, loading collateral files once at start-up."""
        collateral: dict[str, bytes] = {}
        try:
            if vcek is not None:
                collateral["vcek"] = vcek.read_bytes()
            if tdx_collateral is not None:
                for path in sorted(tdx_collateral.iterdir()):
                    if path.is_file():
                        collateral[path.name] = path.read_bytes()
        except OSError as exc:
            raise AttesterError(f"cannot read attestation collateral: {exc}") from None
        attester = cls(kind, tsm_root or TSM_REPORT_ROOT, collateral, privlevel)
        if not attester.root.is_dir():
            raise AttesterError(
                f"{attester.root} does not exist: this is not a {kind} guest with configfs-tsm "
                "(Linux 6.7+, configfs mounted); use --attester software outside an enclave"
            )
        return attester

    def _read(self, entry: Path, name: str) -> bytes:
        try:
            return (entry / name).read_bytes()
        except OSError as exc:
            raise AttesterError(f"configfs-tsm: reading {name} failed: {exc.strerror}") from None

    def attest(self, report_data: bytes) -> Evidence:
        if len(report_data) != 64:
            raise AttesterError("report_data must be exactly 64 bytes")
        entry = self.root / f"sealgate-{uuid.uuid4().hex}"
        try:
            self._make_entry(entry)
        except OSError as exc:
            raise AttesterError(f"configfs-tsm: cannot create {entry}: {exc.strerror}") from None
        try:
            if self._privlevel is not None:
                (entry / "privlevel").write_text(str(self._privlevel))
            (entry / "inblob").write_bytes(report_data)
            generation = self._read(entry, "generation")
            outblob = self._read(entry, "outblob")
            auxblob = self._read(entry, "auxblob") if (entry / "auxblob").exists() else b""
            provider = self._read(entry, "provider").decode(errors="replace").strip()
            if self._read(entry, "generation") != generation:
                raise AttesterError("configfs-tsm entry was modified concurrently; retry")
        except OSError as exc:
            raise AttesterError(f"configfs-tsm: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(OSError):  # already gone: the kernel frees it either way
                os.rmdir(entry)
        expected = _PROVIDERS[self.platform]
        if provider != expected:
            raise AttesterError(f"configfs-tsm provider is {provider!r}, expected {expected!r}")
        collateral = dict(self._collateral)
        if self.platform == "sev-snp":
            if len(outblob) < SNP_REPORT_SIZE:
                raise AttesterError(f"SEV-SNP report is {len(outblob)} bytes, expected 1184")
            outblob = outblob[:SNP_REPORT_SIZE]
            if auxblob:
                collateral.update(parse_cert_table(auxblob))
        return Evidence(outblob, collateral)

    def describe(self) -> dict[str, str]:
        return {"platform": self.platform, "configfs_tsm": str(self.root)}
