from __future__ import annotations

from tasks.cli import main

raise SystemExit(main())
