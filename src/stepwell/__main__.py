from stepwell.cli import main

main()
