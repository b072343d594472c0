{
  "targets": [
    {
      "target_name": "graft_native",
      "sources": [
        "native/src/binding.cc",
        "native/src/onednn.cc",
        "native/src/matmul.cc",
        "native/src/conv.cc",
        "native/src/depthwise.cc",
        "native/src/eltwise.cc",
        "native/src/binary.cc",
        "native/src/layout.cc",
        "native/src/reduce.cc",
        "native/src/norm.cc",
        "native/src/softmax.cc",
        "native/src/pool.cc",
        "native/src/attention.cc",
        "native/src/index.cc",
        "native/src/resample.cc",
        "native/src/quant4.cc",
        "native/src/simd_avx2.cc",
        "native/src/simd_avx512.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions", "-O2"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-O2"],
      "cflags_cc": ["-std=c++17", "-O3", "-fopenmp", "-mavx2", "-mfma", "-ffp-contract=fast", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wno-unknown-pragmas"],
      "libraries": ["-ldnnl", "-fopenmp"]
    }
  ]
}
