"""``python -m matchdetr`` (and ``torchrun -m matchdetr train ...``)."""

from .cli import main

raise SystemExit(main())
