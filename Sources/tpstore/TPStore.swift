import ArgumentParser
import Foundation

/// `tpstore`: the command line over the TenPak library. The root holds only configuration; each
/// subcommand lives in its own file and names itself (`commandName`): without it ArgumentParser
/// derives every subcommand's name from its type name, by dynamic casts, on every start.
@main
struct TPStore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tpstore",
        abstract: "A deduplicating, delta-compressing store for model weights.",
        discussion: "The store is ~/.tpstore unless --store or TPSTORE_DIR names another.",
        version: "0.1.0",
        subcommands: [Init.self, Put.self, Get.self, List.self, Show.self, Stats.self, Remove.self, Fsck.self, GC.self, Copy.self, Pull.self, Push.self,
                      Cat.self, Tensor.self, Serve.self, LFSAgentCommand.self, LFSInstall.self,
                      Optimize.self, Annotations.self]
    )

    /// ArgumentParser's entry point, after the process-wide allocator policy (`AllocatorPolicy`).
    static func main() async {
        AllocatorPolicy.apply(environment: ProcessInfo.processInfo.environment)
        await main(nil)
    }
}
