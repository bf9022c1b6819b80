from acmems.cli import main

raise SystemExit(main())
