/* diff.c: being written */
