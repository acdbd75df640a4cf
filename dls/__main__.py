from dls.cli import main

raise SystemExit(main())
