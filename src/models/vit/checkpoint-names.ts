// The two naming schemes that are renamed on load (every other scheme is the model's own):
// torchvision's VisionTransformer into timm's names, and the first transformers DINOv3 names
// into the current ones. Each is a small table of (pattern, replacement) applied in order.

type RenameTable = readonly (readonly [RegExp, string])[];

function renameWith(table: RenameTable, key: string): string {
  for (const [pattern, replacement] of table) {
    if (pattern.test(key)) return key.replace(pattern, replacement);
  }
  return key;
}

// torchvision/models/vision_transformer.py: EncoderBlock(ln_1, self_attention =
// nn.MultiheadAttention (in_proj rows [q; k; v], like timm's qkv), ln_2, mlp = MLPBlock
// (Linear at 0 and 3; `linear_1`/`linear_2` before torchvision 0.13)).
const TORCHVISION_TO_TIMM: RenameTable = [
  [/^class_token$/, 'cls_token'],
  [/^conv_proj\./, 'patch_embed.proj.'],
  [/^encoder\.pos_embedding$/, 'pos_embed'],
  [/^encoder\.layers\.encoder_layer_(\d+)\.ln_1\./, 'blocks.$1.norm1.'],
  [/^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.in_proj_weight$/, 'blocks.$1.attn.qkv.weight'],
  [/^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.in_proj_bias$/, 'blocks.$1.attn.qkv.bias'],
  [/^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.out_proj\./, 'blocks.$1.attn.proj.'],
  [/^encoder\.layers\.encoder_layer_(\d+)\.ln_2\./, 'blocks.$1.norm2.'],
  [/^encoder\.layers\.encoder_layer_(\d+)\.mlp\.(?:0|linear_1)\./, 'blocks.$1.mlp.fc1.'],
  [/^encoder\.layers\.encoder_layer_(\d+)\.mlp\.(?:3|linear_2)\./, 'blocks.$1.mlp.fc2.'],
  [/^encoder\.ln\./, 'norm.'],
  [/^heads\.head\./, 'head.'],
];

/** torchvision VisionTransformer key → graft's (timm) key; keys it does not know are returned as they are. */
export function torchvisionToTimmName(key: string): string {
  return renameWith(TORCHVISION_TO_TIMM, key);
}

// The first transformers port (convert_dinov3_vit_to_hf.py before the rename) kept the original
// DINOv3 module names: patch_embed.proj → embeddings.patch_embeddings.proj(ection), qkv split
// into query/key/value, attn.proj, ls{1,2}.gamma, mlp.fc1/fc2 and SwiGLU w1/w2/w3.
const DINOV3_EARLIER_TO_CURRENT: RenameTable = [
  [/^embeddings\.patch_embeddings\.(?:proj|projection)\./, 'embeddings.patch_embeddings.'],
  [/^layer\.(\d+)\.attention\.query\./, 'layer.$1.attention.q_proj.'],
  [/^layer\.(\d+)\.attention\.key\./, 'layer.$1.attention.k_proj.'],
  [/^layer\.(\d+)\.attention\.value\./, 'layer.$1.attention.v_proj.'],
  [/^layer\.(\d+)\.attention\.proj\./, 'layer.$1.attention.o_proj.'],
  [/^layer\.(\d+)\.layer_scale(\d)\.gamma$/, 'layer.$1.layer_scale$2.lambda1'],
  [/^layer\.(\d+)\.mlp\.fc1\./, 'layer.$1.mlp.up_proj.'],
  [/^layer\.(\d+)\.mlp\.fc2\./, 'layer.$1.mlp.down_proj.'],
  [/^layer\.(\d+)\.mlp\.w1\./, 'layer.$1.mlp.gate_proj.'],
  [/^layer\.(\d+)\.mlp\.w2\./, 'layer.$1.mlp.up_proj.'],
  [/^layer\.(\d+)\.mlp\.w3\./, 'layer.$1.mlp.down_proj.'],
];

/** Keys only the earlier DINOv3 naming has. */
export const DINOV3_EARLIER_SIGNATURE = /^(?:embeddings\.patch_embeddings\.(?:proj|projection)\.|layer\.\d+\.(?:attention\.(?:query|key|value|proj)\.|layer_scale\d\.gamma$|mlp\.(?:fc1|fc2|w1|w2|w3)\.))/;

/** DINOv3 RoPE buffers (`rope_embeddings.inv_freq`, original `periods`) and the original key-bias mask are recomputed, not loaded. */
export function isDinov3DerivedBuffer(key: string): boolean {
  return /^rope_embeddings\.|\.bias_mask$/.test(key);
}

/** Earlier DINOv3 key → current key; current keys are returned as they are. */
export function dinov3CurrentName(key: string): string {
  return renameWith(DINOV3_EARLIER_TO_CURRENT, key);
}
