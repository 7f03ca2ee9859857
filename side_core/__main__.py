from side_core.cli import main

raise SystemExit(main())
