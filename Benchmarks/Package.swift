// swift-tools-version: 6.1
// Micro-benchmarks of Sluice's hot pure functions, kept out of the main package so that building and testing
// Sluice never pulls in the benchmark harness. Run from this folder: `swift package benchmark`.
import PackageDescription

let package = Package(
    name: "sluice-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "sluice", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "SluiceBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SluiceCore", package: "sluice"),
                .product(name: "SluiceServer", package: "sluice"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/SluiceBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark")
            ]
        )
    ]
)
