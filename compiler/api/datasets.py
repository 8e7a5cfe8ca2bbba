"""Named datasets: what a request's `dataset` may name, resolved from folders the operator registers.

A request names a dataset, never a path. The operator lists dataset roots (`serve --datasets`, or
$FTC_API_DATASETS, colon-separated); `<root>/<namespace>/<name>/` or, for namespace `default`,
`<root>/<name>/` holding training/ is the dataset. ftc's bundled `demo` is always there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ftc.compiler.errors import UserError

DATASETS_ENV = "FTC_API_DATASETS"
BUNDLED = ("demo",)


class UnknownDataset(LookupError):
    pass


@dataclass(frozen=True)
class DatasetRoots:
    roots: tuple[Path, ...]

    @classmethod
    def from_option(cls, option: str | None) -> DatasetRoots:
        text = option if option is not None else os.environ.get(DATASETS_ENV, "")
        roots = tuple(Path(p).resolve() for p in text.split(os.pathsep) if p)
        for root in roots:
            if not root.is_dir():
                raise UserError(f"--datasets: {root} is not a folder (dataset roots: --datasets or ${DATASETS_ENV})")
        return cls(roots)

    def resolve(self, namespace: str, name: str) -> Path | None:
        """The dataset folder, or None for a bundled one (the `data=NAME` config group)."""
        for root in self.roots:
            for folder in (root / namespace / name, root / name if namespace == "default" else None):
                if folder is not None and (folder / "training").is_dir():
                    return folder
        if namespace == "default" and name in BUNDLED:
            return None
        raise UnknownDataset(f"dataset.name: no dataset {namespace}/{name}; registered: {', '.join(self.names()) or 'none'}")

    def namespace_of(self, path: str | None) -> str:
        """The namespace a dataset folder was named by: <root>/<namespace>/<name> or <root>/<name> (default)."""
        folder = Path(path) if path else None
        for root in self.roots:
            if folder is not None and folder.is_relative_to(root):
                parts = folder.relative_to(root).parts
                if len(parts) == 2:
                    return parts[0]
        return "default"

    def names(self) -> list[str]:
        found = [f"default/{name}" for name in BUNDLED]
        for root in self.roots:
            for training in sorted(root.glob("*/training")) + sorted(root.glob("*/*/training")):
                folder = training.parent
                parts = folder.relative_to(root).parts
                ref = "/".join(parts) if len(parts) == 2 else f"default/{parts[0]}"
                if ref not in found:
                    found.append(ref)
        return found
