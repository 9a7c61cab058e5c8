from tallyql.cli import main

main()
