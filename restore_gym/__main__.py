from restore_gym.cli import main

raise SystemExit(main())
