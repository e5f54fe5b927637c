"""Bundles for air-gapped machines: ``create`` on a connected machine, ``install`` on the offline one.

A bundle is a folder (or tar) with the DEST, the wheels, the vocabulary, optional kernels and OSV snapshot, a
stdlib-only installer and ``manifest.json`` with the SHA-256 of every file. See :mod:`.create` for the layout and
:mod:`.standalone` for the install steps. Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BundleOptions", "BundleResult", "InstallResult", "create_bundle", "install_bundle"]


def __getattr__(name: str) -> Any:
    if name in ("BundleOptions", "BundleResult", "create_bundle"):
        from gptoss_cli.bundle import create

        return getattr(create, name)
    if name in ("InstallResult", "install_bundle"):
        from gptoss_cli.bundle import install

        return getattr(install, name)
    raise AttributeError(name)
