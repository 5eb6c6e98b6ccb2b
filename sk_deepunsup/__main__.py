"""``python -m sk_deepunsup``: the ``sk-deepunsup`` command."""

from ._cli import main

raise SystemExit(main())
