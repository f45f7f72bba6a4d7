from classifi.cli import main

main()
