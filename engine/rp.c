/* rp.c: being written */
