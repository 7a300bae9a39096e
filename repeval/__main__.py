from repeval.cli import main

main()
