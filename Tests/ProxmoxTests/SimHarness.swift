import FelhomCore
import Foundation
import PVESimulator

@testable import Proxmox

/// Starts an in-process simulator on a free loopback port with fast tasks, and makes clients for it.
struct SimHarness {
    let sim: PVESimulator.Running

    static func start(
        clock: WallClock = SystemWallClock(), stateDirectory: URL? = nil, taskSeconds: Double = 0.05,
        _ adjust: (inout SimState) -> Void = { _ in }
    ) async throws -> SimHarness {
        var state = SimSeed.defaultState(now: clock.now())
        state.settings.taskDurations = ["default": taskSeconds]
        adjust(&state)
        var options = PVESimulator.Options()
        options.port = 0
        options.seed = state
        options.clock = clock
        options.stateDirectory = stateDirectory
        return SimHarness(sim: try await PVESimulator.start(options))
    }

    func client(_ tokenID: String = SimSeed.agentTokenID, secret: String? = nil) throws -> PVEClient {
        PVEClient(connection: try PVEConnection(
            host: "127.0.0.1", port: sim.port, tokenID: tokenID,
            tokenSecret: Secret(secret ?? sim.secret(for: tokenID) ?? "missing"),
            trust: .pinnedLeafSHA256(try CertificateFingerprint(parsing: sim.fingerprint ?? "")), requestTimeout: .seconds(20)))
    }

    var engine: PVESimEngine { sim.engine }

    func stop() async { await sim.shutdown() }
}

/// Runs `body` with a fresh simulator, always shutting it down.
func withSim(
    clock: WallClock = SystemWallClock(), taskSeconds: Double = 0.05, _ adjust: (inout SimState) -> Void = { _ in },
    _ body: (SimHarness) async throws -> Void
) async throws {
    let h = try await SimHarness.start(clock: clock, taskSeconds: taskSeconds, adjust)
    do { try await body(h) } catch {
        await h.stop()
        throw error
    }
    await h.stop()
}
