// foley convert: official checkpoints -> one foley weight bundle.
#include <cstdio>
#include <memory>
#include <string>

#include "commands.h"
#include "foley/convert.h"

namespace foley_cli {

Command add_convert_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert", "Convert official HunyuanVideo-Foley checkpoints into one foley bundle");
  auto req = std::make_shared<foley::ConvertRequest>();
  auto no_dit = std::make_shared<bool>(false);
  auto no_dac = std::make_shared<bool>(false);
  cmd->add_option("--model-dir", req->model_dir,
                  "official model directory (hunyuanvideo_foley.pth + config.yaml and/or "
                  "hunyuanvideo_foley_xl.pth + hunyuanvideo-foley-xl.yaml, vae_128d_48k.pth, "
                  "synchformer_state_dict.pth; SigLIP2 and CLAP from siglip2/ and clap/ "
                  "subfolders). A hunyuanvideo_foley*.safetensors DiT (e.g. an fp8 community "
                  "conversion) may stand in for the .pth");
  cmd->add_option("--model-size", req->model_size,
                  "xxl or xl: which DiT of --model-dir to convert (default: the one it holds; "
                  "needed when it holds both). The variant recorded in the bundle is recognised "
                  "from the tensors")
      ->check(CLI::IsMember({"xxl", "xl"}));
  cmd->add_option("--dit", req->dit_checkpoint,
                  "DiT checkpoint, .pth or .safetensors (overrides --model-dir's)");
  cmd->add_option("--dit-config", req->dit_config, "DiT config.yaml (overrides --model-dir)");
  cmd->add_option("--vae", req->dac_checkpoint, "vae_128d_48k.pth (overrides --model-dir)");
  cmd->add_flag("--no-dit", *no_dit, "leave the DiT out");
  cmd->add_flag("--no-vae", *no_dac, "leave the DAC-VAE out");
  cmd->add_option(
         "--dtype", req->dtype,
         "storage of the DiT weights: bf16 (default), f32, or fp8 / int8 (the blocks' matrices as "
         "8-bit codes with per-channel scales: FP8 needs an Ada/Hopper GPU, INT8 sm_80+)")
      ->check(CLI::IsMember({"bf16", "f32", "fp8", "int8"}));
  cmd->add_option("--synchformer-heads", req->synchformer_heads,
                  "Synchformer attention heads (no tensor carries them; default: guess from the "
                  "width, heads of 64 at dim >= 768 as the official model, 32 below)")
      ->check(CLI::Range(1, 4096));
  // bf16 passes the CLI so that convert_model's message says why it is refused.
  cmd->add_option("--synchformer-dtype", req->synchformer_dtype,
                  "storage of the Synchformer matmul weights: f32 (default) or f16 (the "
                  "reference's fp16 autocast precision)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd->add_option("-o,--output", req->output, "bundle to write (.safetensors)")->required();
  return {cmd, [req, no_dit, no_dac]() {
            req->include_dit = !*no_dit;
            req->include_dac = !*no_dac;
            const foley::ConvertSummary s = foley::convert_model(*req);
            for (const auto& note : s.notes)
              std::fprintf(stderr, "foley: note: %s\n", note.c_str());
            for (const auto& net : s.networks) {
              std::string from;
              for (const auto& f : s.sources.at(net)) from += (from.empty() ? "" : ", ") + f;
              std::printf("%-6s <- %s\n", net.c_str(), from.c_str());
            }
            if (!s.variant.empty()) std::printf("variant: %s\n", s.variant.c_str());
            for (const auto& [net, hash] : s.content_hashes)
              std::printf("content hash %-13s %s\n", (net + ":").c_str(), hash.c_str());
            std::printf("wrote %s (%.1f MB)\n", req->output.c_str(), s.bytes / 1e6);
            return 0;
          }};
}

}  // namespace foley_cli
