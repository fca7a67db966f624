from b2b_integrations.cli import main

raise SystemExit(main())
