/* stream_writer.c: being written */
