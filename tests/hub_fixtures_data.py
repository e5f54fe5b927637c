"""The content side of the fake Hub: repositories, files, their hashes and git ids, and a gpt-oss-shaped sample."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

Content = Union[bytes, Path]
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".pkl", ".gguf")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def sha256_of(content: Content) -> str:
    if isinstance(content, bytes):
        return hashlib.sha256(content).hexdigest()
    h = hashlib.sha256()
    with open(content, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def size_of(content: Content) -> int:
    return len(content) if isinstance(content, bytes) else content.stat().st_size


@dataclass
class FakeFile:
    path: str
    content: Content
    lfs: bool
    sha256: str = ""
    oid: str = ""
    size: int = 0

    def __post_init__(self) -> None:
        self.size = size_of(self.content)
        self.sha256 = sha256_of(self.content)
        if self.lfs:
            pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\n"
                       f"size {self.size}\n").encode()
            self.oid = git_blob_id(pointer)
        else:
            assert isinstance(self.content, bytes)
            self.oid = git_blob_id(self.content)


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, FakeFile] = field(default_factory=dict)
    commit: str = ""
    branches: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, repo_id: str, files: dict[str, Content], branch: str = "main") -> "FakeRepo":
        repo = cls(repo_id)
        repo.set_files(files, branch)
        return repo

    def set_files(self, files: dict[str, Content], branch: str = "main") -> None:
        self.files = {p: FakeFile(p, c, p.endswith(LFS_SUFFIXES)) for p, c in files.items()}
        digest = hashlib.sha1(self.repo_id.encode())
        for f in sorted(self.files.values(), key=lambda f: f.path):
            digest.update(f"{f.path}\x00{f.sha256}\n".encode())
        self.commit = digest.hexdigest()
        self.branches[branch] = self.commit
        self.branches["master"] = self.commit


def random_bytes(n: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (fast: sha256 in counter mode)."""
    out = bytearray()
    counter = 0
    block = hashlib.sha256(f"seed-{seed}".encode()).digest()
    while len(out) < n:
        out += hashlib.sha512(block + counter.to_bytes(8, "little")).digest() * 16
        counter += 1
    return bytes(out[:n])


def tiny_model_files(weights_kb: int = 300) -> dict[str, Content]:
    """A gpt-oss-shaped repo: config, tokenizer, two shards, plus original/ and metal/ copies that defaults skip."""
    shard = weights_kb * 1024
    return {
        "config.json": b'{"model_type": "gpt_oss", "num_hidden_layers": 2}\n',
        "generation_config.json": b'{"eos_token_id": 200002}\n',
        "model.safetensors.index.json": b'{"weight_map": {}}\n',
        "model-00000-of-00002.safetensors": random_bytes(shard, 1),
        "model-00001-of-00002.safetensors": random_bytes(shard // 2 + 17, 2),
        "tokenizer.json": b'{"version": "1.0", "model": {}}\n',
        "tokenizer_config.json": b'{"model_max_length": 131072}\n',
        "special_tokens_map.json": b"{}\n",
        "chat_template.jinja": b"{{ messages }}\n",
        "README.md": b"# tiny\n",
        "original/config.json": b'{"orig": true}\n',
        "original/model.safetensors": random_bytes(4096, 3),
        "metal/model.bin": random_bytes(2048, 4),
    }


DEFAULT_SELECTION = ("chat_template.jinja", "config.json", "generation_config.json",
                     "model-00000-of-00002.safetensors", "model-00001-of-00002.safetensors",
                     "model.safetensors.index.json", "special_tokens_map.json", "tokenizer.json",
                     "tokenizer_config.json")


__all__ = ["DEFAULT_SELECTION", "Content", "FakeFile", "FakeRepo", "git_blob_id", "random_bytes", "sha256_of",
           "size_of", "tiny_model_files"]
