// swift-tools-version:6.0
import Foundation
import PackageDescription

// A path dependency is named after its folder, which is whatever the checkout is called.
let felhomPackage = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

// Benchmarks live in their own package so their dependencies stay out of the main build.
// ordo-one/benchmark 1.38.1 (the engineering guide's choice) needs swift-runtime-interposer on
// Swift 6.3/Linux, which cannot be fetched here; google/swift-benchmark reports the same per-op
// time and throughput (no malloc counts).
let package = Package(
    name: "FelhomBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/google/swift-benchmark.git", from: "0.1.2"),
    ],
    targets: [
        .executableTarget(
            name: "SignatureBenchmarks",
            dependencies: [
                .product(name: "FelhomSigning", package: felhomPackage),
                .product(name: "Benchmark", package: "swift-benchmark"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "AgentBenchmarks",
            dependencies: [
                .product(name: "FelhomAgent", package: felhomPackage),
                .product(name: "Benchmark", package: "swift-benchmark"),
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
    ]
)
