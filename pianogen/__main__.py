from pianogen.commands.cli import main

main()
