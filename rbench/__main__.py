"""``python -m rbench``, which torchrun launches: ``torchrun --nproc-per-node 2 -m rbench train …``."""

from rbench.cli import app

if __name__ == "__main__":
    app()
