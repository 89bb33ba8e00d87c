import ArgumentParser
import DarkroomModels
import DarkroomTensor
import DarkroomWeights
import Foundation

extension Bench {
    /// Issue 13: the bf16 mode's error on a full-size model, beside diffusers' autocast, against float64.
    struct PrecisionError: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "precision-error",
            abstract: "Relative L2 error of a UNet call and a VAE decode, fp32 and bf16, against float64 references.",
            discussion: """
                Reads the inputs and diffusers' outputs (float64, fp32 and bf16 autocast) that \
                tools/bench/bf16_error.py writes, runs the same inputs through Darkroom in fp32 and bf16, and prints \
                each output's relative L2 error against the float64 one.
                """)

        @Argument(help: "The safetensors file tools/bench/bf16_error.py wrote.")
        var references: String

        @Argument(help: "The checkpoint the references were made with (a diffusers folder or a .safetensors file).")
        var checkpoint: String

        @Option(help: "bf16: the large planes' 3x3 convolutions as bf16 F(2x2, 3x3) (bf16), as fp32 F(4x4, 3x3) (fp32), or whichever a measurement finds faster (measure).")
        var bf16LargePlanes = Bench.LargePlaneChoice.measure

        func run() throws {
            bf16LargePlanes.apply()
            Bench.header()
            let file = try SafetensorsFile(url: URL(fileURLWithPath: references))
            let models = try StableDiffusionModels.load(URL(fileURLWithPath: checkpoint))
            let sample = try tensor(file, "unet.sample"), context = try tensor(file, "unet.context")
            let timesteps = try tensor(file, "unet.t").scalars
            let latent = try tensor(file, "vae.latent")
            print(pad("output", 24) + pad("diffusers fp32", 16) + pad("autocast", 12) + pad("Darkroom fp32", 16) + "Darkroom bf16")
            for (name, run) in [("UNet call (guided)", { models.unet(sample, timesteps: timesteps, context: context) }),
                                ("VAE decode", { models.vae.decode(latent) })] as [(String, () -> Tensor)] {
                let prefix = name.hasPrefix("UNet") ? "unet" : "vae"
                let reference = try tensor(file, "\(prefix).out_fp64")
                var row = pad(name, 24)
                row += pad(String(format: "%.2e", relativeL2(try tensor(file, "\(prefix).out_fp32"), reference)), 16)
                row += pad(String(format: "%.2e", relativeL2(try tensor(file, "\(prefix).out_autocast"), reference)), 12)
                for precision in [Precision.fp32, .bf16] {
                    Tensor.precision = precision
                    row += pad(String(format: "%.2e", relativeL2(run(), reference)), 16)
                }
                Tensor.precision = .fp32
                print(row)
            }
            print(Bench.largePlaneChoice())
            if !Precision.fallbackReasons.isEmpty { print("bf16 fell back to fp32: \(Precision.fallbackReasons)") }
        }

        func tensor(_ file: SafetensorsFile, _ name: String) throws -> Tensor {
            Tensor(shape: try file.info(name).shape, scalars: try file.floats(name))
        }

        func relativeL2(_ x: Tensor, _ reference: Tensor) -> Double {
            let (a, b) = (x.scalars, reference.scalars)
            guard a.count == b.count else { return .nan }
            let difference = zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
            return (difference / max(b.reduce(0.0) { $0 + Double($1) * Double($1) }, .leastNormalMagnitude)).squareRoot()
        }
    }
}
