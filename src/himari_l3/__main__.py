"""``python -m himari_l3`` is ``himari-l3``."""

from .cli import main

raise SystemExit(main())
