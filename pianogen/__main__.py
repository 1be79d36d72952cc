from pianogen.cli import main

main()
