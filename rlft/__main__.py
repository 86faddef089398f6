from rlft.cli import main

main()
