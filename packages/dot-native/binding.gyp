{
  "targets": [
    {
      "target_name": "dot_native",
      "sources": ["src/search.c"],
      "cflags": ["-O3", "-std=c11", "-Wall", "-Wextra"]
    }
  ]
}
