//! One image: patch features → normalized cuts → (optional CRF) → pixel masks.

use labelscope_core::ncut::{maskcut_detailed, normalized_cut_with_eigenvalue, NcutParams};
use labelscope_core::rle::{CocoRle, Rle};
use labelscope_vision::crf::{CrfParams, DenseCrf};
use labelscope_vision::image::resize_rgb;
use labelscope_vision::mask::upsample_nearest;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::features::FeatureMap;

/// Which cut procedure to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Up to `max_masks` cuts with the corner rule (CutLER).
    MaskCut,
    /// One cut without the corner rule (TokenCut).
    TokenCut,
}

/// A named set of defaults. Every value can be overridden one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// CutLER's ImageNet recipe: DINO ViT-B/8 keys of the last block at
    /// 480×480 px (a 60×60 grid), τ = 0.15, N = 3, dense CRF on.
    CutlerImagenet,
    /// The 2026 multi-label relabelling recipe (Chen, Harun & Kanan): DINOv2/v3
    /// ViT/14 features at 896×896 px (a 64×64 grid), τ = 0.75, N = 4, CRF off.
    Relabel2026,
}

/// The values a [`Recipe`] sets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecipeDefaults {
    /// Cosine threshold τ.
    pub tau: f32,
    /// Maximum number of masks N.
    pub max_masks: usize,
    /// Whether the dense CRF runs.
    pub crf: bool,
    /// Patch size in pixels of the backbone.
    pub patch: usize,
    /// Side of the square network input in pixels.
    pub input_size: usize,
}

impl Recipe {
    /// The recipe's values.
    pub fn defaults(self) -> RecipeDefaults {
        match self {
            Recipe::CutlerImagenet => RecipeDefaults { tau: 0.15, max_masks: 3, crf: true, patch: 8, input_size: 480 },
            Recipe::Relabel2026 => RecipeDefaults { tau: 0.75, max_masks: 4, crf: false, patch: 14, input_size: 896 },
        }
    }
}

/// Everything that decides the proposals of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalParams {
    /// τ, ε and N of the cuts.
    pub ncut: NcutParams,
    /// MaskCut or TokenCut.
    pub method: Method,
    /// Dense-CRF refinement (needs the image), or `None`.
    pub crf: Option<CrfParams>,
    /// Patch size in pixels: the CRF runs on the image resized to `(w·patch) × (h·patch)`,
    /// the network input the features came from.
    pub patch: usize,
}

/// One proposal of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The mask on the patch grid (`h * w`, row-major), as the cut returned it.
    pub grid_mask: Vec<bool>,
    /// The mask at the output size (`height * width`, row-major).
    pub mask: Vec<bool>,
    /// `1 − λ` of the cut that produced the mask (the second eigenvalue of
    /// `D^{-1/2} A D^{-1/2}`; near 1 for a clean cut).
    pub score: f64,
    /// The 0-based cut that produced the mask.
    pub cut: usize,
}

/// The proposals of one image at the output size.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProposals {
    /// Output width in pixels.
    pub width: usize,
    /// Output height in pixels.
    pub height: usize,
    /// The patch grid `[h, w]`.
    pub grid: [usize; 2],
    /// The proposals in discovery order (pairwise disjoint).
    pub proposals: Vec<Proposal>,
    /// Masks dropped by the CRF rule (IoU with the pre-CRF mask < 0.5, or empty after refinement).
    pub dropped_by_crf: usize,
}

/// Computes the proposals of one image.
///
/// The output size is the image's size when `image` is given, else `size`
/// (`(width, height)`), else the patch grid itself. Grid masks are brought to
/// the output size by nearest-neighbour sampling (pixel `(y, x)` takes grid
/// cell `(⌊y·h/H⌋, ⌊x·w/W⌋)`). With a CRF, each grid mask is refined on the
/// image resized to the network input `(w·patch) × (h·patch)`, holes are
/// filled, the mask is dropped if its IoU with the unrefined mask is below
/// 0.5, and the refined mask is resampled to the output size the same way.
/// Refinement can make masks overlap: each mask then loses the pixels of the
/// masks returned before it (and is dropped if nothing is left), so the
/// returned masks stay pairwise disjoint.
pub fn propose(
    feat: &FeatureMap,
    image: Option<&image::RgbImage>,
    size: Option<(usize, usize)>,
    params: &ProposalParams,
) -> Result<ImageProposals> {
    let (gh, gw) = (feat.h, feat.w);
    let cuts: Vec<(Vec<bool>, f64, usize)> = match params.method {
        Method::MaskCut => maskcut_detailed(&feat.data, gh, gw, feat.d, &params.ncut)?
            .into_iter()
            .map(|m| (m.mask, 1.0 - m.eigenvalue, m.cut))
            .collect(),
        Method::TokenCut => {
            let (lambda, cut) = normalized_cut_with_eigenvalue(&feat.data, gh, gw, feat.d, &params.ncut, false)?;
            if cut.mask.iter().any(|&b| b) {
                vec![(cut.mask, 1.0 - lambda, 0)]
            } else {
                Vec::new()
            }
        }
    };
    let (width, height) = match (image, size) {
        (Some(img), _) => (img.width() as usize, img.height() as usize),
        (None, Some(s)) => s,
        (None, None) => (gw, gh),
    };
    if width == 0 || height == 0 {
        return Err(Error::Invalid(format!("image size {width}x{height} is empty")));
    }
    let crf_input = match (&params.crf, image) {
        (Some(crf), Some(img)) => {
            if params.patch == 0 {
                return Err(Error::Invalid("the patch size must be at least 1".into()));
            }
            let rgb = resize_rgb(img, (gw * params.patch) as u32, (gh * params.patch) as u32)?;
            let ctx = if cuts.is_empty() { None } else { Some(DenseCrf::new(&rgb, crf)?) };
            Some((rgb, ctx))
        }
        (Some(_), None) => {
            return Err(Error::Invalid(
                "the CRF needs the image: give the image, or turn the CRF off (--no-crf)".into(),
            ))
        }
        (None, _) => None,
    };
    let mut taken = vec![false; width * height];
    let mut proposals = Vec::new();
    let mut dropped_by_crf = 0;
    // Masks at the output size (None: dropped by the CRF rule); the CRF of
    // each mask runs in parallel on the image's shared kernels.
    let sized: Vec<Option<Vec<bool>>> = cuts
        .par_iter()
        .map(|(grid_mask, _, _)| -> Result<Option<Vec<bool>>> {
            Ok(match &crf_input {
                Some((rgb, Some(ctx))) => match ctx.refine(grid_mask, gh, gw)? {
                    Some(refined) => {
                        Some(upsample_nearest(&refined, rgb.height() as usize, rgb.width() as usize, height, width)?)
                    }
                    None => None,
                },
                _ => Some(upsample_nearest(grid_mask, gh, gw, height, width)?),
            })
        })
        .collect::<Result<_>>()?;
    for ((grid_mask, score, cut), mask) in cuts.into_iter().zip(sized) {
        let Some(mut mask) = mask else {
            dropped_by_crf += 1;
            continue;
        };
        for (m, t) in mask.iter_mut().zip(taken.iter_mut()) {
            if *t {
                *m = false;
            } else if *m {
                *t = true;
            }
        }
        if !mask.iter().any(|&b| b) {
            dropped_by_crf += 1;
            continue;
        }
        proposals.push(Proposal { grid_mask, mask, score, cut });
    }
    Ok(ImageProposals { width, height, grid: [gh, gw], proposals, dropped_by_crf })
}

/// The stored form of one proposal: a COCO annotation without ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalRecord {
    /// The mask as COCO compressed RLE (column-major, as pycocotools).
    pub segmentation: CocoRle,
    /// `[x, y, width, height]` of the mask in pixels (pycocotools `toBbox`).
    pub bbox: [f64; 4],
    /// Number of mask pixels.
    pub area: u64,
    /// `1 − λ` of the cut (see [`Proposal::score`]).
    pub score: f64,
    /// The cut that produced the mask.
    pub cut: usize,
}

/// The stored form of one image's proposals: one line of a shard file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image id (join key: file name without image extension).
    pub id: String,
    /// The image file name, as COCO's `file_name`.
    pub file_name: String,
    /// Width of the masks in pixels.
    pub width: usize,
    /// Height of the masks in pixels.
    pub height: usize,
    /// The patch grid `[h, w]` of the features.
    pub grid: [usize; 2],
    /// Masks dropped by the CRF rule.
    #[serde(default)]
    pub dropped_by_crf: usize,
    /// The proposals in discovery order.
    pub proposals: Vec<ProposalRecord>,
}

impl ImageProposals {
    /// Encodes the masks as COCO RLE records.
    pub fn to_record(&self, id: &str, file_name: &str) -> Result<ImageRecord> {
        let mut out = Vec::with_capacity(self.proposals.len());
        for p in &self.proposals {
            let rle = Rle::encode(&p.mask, self.height, self.width)?;
            out.push(ProposalRecord {
                segmentation: rle.to_coco(),
                bbox: rle.bbox(),
                area: rle.area(),
                score: p.score,
                cut: p.cut,
            });
        }
        Ok(ImageRecord {
            id: id.to_string(),
            file_name: file_name.to_string(),
            width: self.width,
            height: self.height,
            grid: self.grid,
            dropped_by_crf: self.dropped_by_crf,
            proposals: out,
        })
    }
}
