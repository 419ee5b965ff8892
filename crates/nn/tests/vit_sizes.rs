//! Full-size configurations build with the parameter counts of the official
//! checkpoints (`VarBuilder::zeros`, so no weights are needed). The expected
//! counts were computed from the tensor shapes of the published state dicts
//! (facebookresearch/dinov2 `vit_small/base/large/giant2` with
//! `img_size=518, patch_size=14`, 0 or 4 registers, SwiGLU for ViT-g;
//! facebookresearch/dino ViT-S/16 and ViT-B/8); the DINOv2 state dicts also
//! hold `mask_token` `[1, D]`, which the model does not read.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use labelscope_nn::{preset, Vit};

#[test]
fn full_size_backbones_have_the_official_parameter_counts() {
    let dev = Device::Cpu;
    // (name, parameters of the official state dict, mask_token included for DINOv2, FFN hidden).
    let cases = [
        ("dino-vits16", 21_665_664usize, 1536usize),
        ("dino-vitb8", 85_807_872, 3072),
        ("dinov2-vits14", 22_056_576, 1536),
        ("dinov2-vits14-reg", 22_058_112, 1536),
        ("dinov2-vitb14", 86_580_480, 3072),
        ("dinov2-vitb14-reg", 86_583_552, 3072),
        ("dinov2-vitl14", 304_368_640, 4096),
        ("dinov2-vitl14-reg", 304_372_736, 4096),
        ("dinov2-vitg14", 1_136_480_768, 4096),
        ("dinov2-vitg14-reg", 1_136_486_912, 4096),
    ];
    for (name, want, hidden) in cases {
        let (cfg, variant) = preset(name).unwrap();
        // bf16 zeros keep the 1.1 B-parameter ViT-g at 2.3 GB; one model at a time.
        let dtype = if cfg.dim >= 1024 { DType::BF16 } else { DType::F32 };
        let vit = Vit::with_variant(cfg, variant, VarBuilder::zeros(dtype, &dev)).unwrap();
        let mask = if name.starts_with("dinov2") { cfg.dim } else { 0 };
        assert_eq!(vit.num_parameters() + mask, want, "{name}");
        assert_eq!(vit.ffn_hidden(), hidden, "{name}");
        assert_eq!(vit.prefix_tokens(), if name.ends_with("-reg") { 5 } else { 1 }, "{name}");
        assert_eq!(vit.pos_grid(), if name.starts_with("dinov2") { 37 } else { 224 / cfg.patch }, "{name}");
    }
    assert!(preset("dino-vits16-reg").is_none());
    assert!(preset("dinov2-vith14").is_none());
}
