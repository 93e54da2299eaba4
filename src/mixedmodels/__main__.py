from mixedmodels.cli import main

raise SystemExit(main())
