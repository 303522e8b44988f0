from streamtasks.cli import main

main()
