//! Image-side operations of labelscope: decoding, mask resampling, dense-CRF
//! refinement of binary masks and overlays.
