// swift-tools-version:6.0
import PackageDescription

// Felhom: one package, one library module per component, thin executables.
// Dependency direction: executables -> components (FelhomAgent, FelhomHub, PVESimulator) -> Proxmox ->
// FelhomHTTP (the one outbound HTTP client) and FelhomCore.
let package = Package(
    name: "felhom",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "felhom", targets: ["felhom"]),
        .executable(name: "felhom-agent", targets: ["felhom-agent"]),
        .executable(name: "felhom-agent-gate", targets: ["felhom-agent-gate"]),
        .executable(name: "felhom-hub", targets: ["felhom-hub"]),
        .executable(name: "felhom-controller", targets: ["felhom-controller"]),
        .library(name: "FelhomController", targets: ["FelhomController"]),
        .library(name: "Proxmox", targets: ["Proxmox"]),
        .library(name: "PVESimulator", targets: ["PVESimulator"]),
        .library(name: "FelhomSigning", targets: ["FelhomSigning"]),
        .library(name: "FelhomAgent", targets: ["FelhomAgent"]),
        .library(name: "FelhomCore", targets: ["FelhomCore"]),
        .library(name: "FelhomAPI", targets: ["FelhomAPI"]),
        .library(name: "FelhomHubClient", targets: ["FelhomHubClient"]),
        .library(name: "ObjectStore", targets: ["ObjectStore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/sql-kit.git", from: "3.36.0"),
        .package(url: "https://github.com/vapor/sqlite-kit.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/postgres-kit.git", from: "2.17.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
    ],
    targets: [
        .target(
            name: "FelhomCore",
            dependencies: [.product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "FelhomSigning",
            dependencies: [
                "FelhomCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "FelhomHTTP",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .target(
            name: "ObjectStore",
            dependencies: ["FelhomCore", "FelhomHTTP", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "Proxmox",
            dependencies: [
                "FelhomCore", "FelhomHTTP",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "PVESimulator",
            dependencies: [
                "FelhomCore", "FelhomHTTP", "Proxmox",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "FelhomAPI",
            dependencies: ["FelhomCore"]
        ),
        .target(
            name: "FelhomHubClient",
            dependencies: ["FelhomCore", "FelhomHTTP", "FelhomAPI"]
        ),
        // The self-update gate's logic and the A/B install root's format: shared by the agent (which
        // flips) and felhom-agent-gate (which keeps or reverts), and deliberately free of the agent.
        .target(
            name: "FelhomGate",
            dependencies: ["FelhomCore"]
        ),
        .target(
            name: "FelhomAgent",
            dependencies: [
                "FelhomCore", "FelhomGate", "Proxmox", "FelhomSigning", "FelhomHubClient", "FelhomHTTP", "ObjectStore", "FelhomAPI",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "FelhomHub",
            dependencies: [
                "FelhomCore", "FelhomAPI", "FelhomHTTP", "FelhomSigning",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "SQLiteKit", package: "sqlite-kit"),
                .product(name: "PostgresKit", package: "postgres-kit"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "felhom-hub",
            dependencies: [
                "FelhomHub", "FelhomCore", "FelhomHTTP", "FelhomSigning",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "felhom",
            dependencies: [
                "FelhomCore", "FelhomAPI", "FelhomSigning", "Proxmox", "PVESimulator", "FelhomAgent", "FelhomHubClient", "FelhomHub", "FelhomHTTP",
                "FelhomController", "ObjectStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ]
        ),
        .executableTarget(
            name: "felhom-agent",
            dependencies: [
                "FelhomCore", "Proxmox", "FelhomAgent", "FelhomAPI", "FelhomHubClient", "ObjectStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(
            name: "FelhomController",
            dependencies: [
                "FelhomCore", "FelhomHTTP", "FelhomAPI", "FelhomHubClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ]
        ),
        .executableTarget(
            name: "felhom-agent-gate",
            dependencies: ["FelhomGate", "FelhomCore", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "felhom-controller",
            dependencies: [
                "FelhomController", "FelhomCore", "FelhomAPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "FelhomControllerTests",
            dependencies: [
                "FelhomController", "FelhomCore", "PVESimulator", "FelhomTestSupport", "FelhomAPI", "FelhomHubClient",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "FelhomTestSupport",
            dependencies: [
                "FelhomCore", "FelhomHub", "PVESimulator", "Proxmox", "FelhomController", "ObjectStore", "FelhomHTTP",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/FelhomTestSupport"
        ),
        .testTarget(
            name: "ObjectStoreTests",
            dependencies: ["ObjectStore", "FelhomHTTP", "FelhomTestSupport", .product(name: "Crypto", package: "swift-crypto")],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "FelhomCoreTests",
            dependencies: ["FelhomCore", "FelhomTestSupport", .product(name: "Crypto", package: "swift-crypto")],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "ProxmoxTests",
            dependencies: [
                "Proxmox", "PVESimulator", "FelhomCore", "FelhomTestSupport",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "PVESimulatorTests",
            dependencies: ["PVESimulator", "Proxmox", "FelhomCore"],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "FelhomSigningTests",
            dependencies: [
                "FelhomSigning", "FelhomCore", "FelhomTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "FelhomHubTests",
            dependencies: [
                "FelhomHub", "FelhomAPI", "FelhomCore", "FelhomHTTP", "FelhomSigning", "FelhomTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["Peers"]
        ),
        .testTarget(
            name: "FelhomAgentTests",
            dependencies: [
                "FelhomAgent", "FelhomGate", "Proxmox", "PVESimulator", "FelhomCore", "FelhomAPI", "FelhomHub", "FelhomHubClient", "FelhomSigning",
                "FelhomController", "FelhomHTTP", "ObjectStore",
                "FelhomTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
