from incident.cli import main

main()
