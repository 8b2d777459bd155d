/* container.c: being written */
