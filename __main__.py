from ftc.compiler.cli import main

main()
