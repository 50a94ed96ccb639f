"""The official SEEM call layouts, for parity with the official code and for research use: one
decoder call per request with the official batch layout (a visual prompt per batch row, the image
features repeated; text grounding among all 101 queries). The streaming API the tracker and the node
use (SeemPredictor: text_query, visual_query, follow_queries, decode) runs every object of a frame
in one frame-engine pass instead.

    predictor = OfficialLayoutPredictor(load_seem("seem_focalt_v1.pt"))
    predictor.set_image(rgb)
    cup = predictor.predict_text(["the red cup"])[0]  # text grounding
    obj = predictor.predict_visual([VisualPrompt(points=[(320, 240, 1)])])[0]
    obj = predictor.predict_visual([VisualPrompt(points=[(320, 240, 1), (100, 80, 0)])],
                                   memory=[obj])[0]   # refine with memory of the previous round
    same = predictor.predict_reference(predictor.encode_reference(example_rgb, example_mask))
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.nn import functional as F

from seem_ros.inference.predictor import MaskResult, SeemPredictor
from seem_ros.inference.visual_prompt import VisualPrompt
from seem_ros.model.language_encoder import cosine_similarity
from seem_ros.model.visual_sampler import SpatialPrompt


class OfficialLayoutPredictor(SeemPredictor):
    @torch.no_grad()
    def grounding_logits(self, texts: Sequence[str], spatial: Optional[SpatialPrompt] = None) -> Tuple[Tensor, Tensor]:
        """One decoder call with the tokens of all texts -> (per text best grounding mask logits at
        stride 4 (N, h, w), cosine similarity of the chosen query to the text (N,)). Official
        evaluate_grounding."""
        if not texts:
            raise ValueError("no text given")
        f = self.features
        token_rows, sentences = zip(*(self.text_tokens(t) for t in texts))
        tokens = torch.cat(token_rows)[:, None]
        padding = torch.zeros((1, tokens.shape[0]), dtype=torch.bool, device=tokens.device)
        mask_features, multi_scale = f.mask_features, f.multi_scale
        out = self.model.decoder(multi_scale, mask_features, text_embeddings=self.class_embeddings,
                                 grounding_tokens=tokens, grounding_padding=padding, spatial=spatial, rng=self.rng)
        # the official vl_similarity scales this by a positive temperature, which leaves the argmax unchanged
        best = cosine_similarity(out.grounding_captions[0], torch.stack(sentences)).max(0)
        return out.grounding_masks[0][best.indices], best.values

    def predict_text_with_prompts(self, texts: Sequence[str], prompts: Sequence[VisualPrompt]) -> List[MaskResult]:
        """Composition (official evaluate_grounding_sptial): text i together with visual prompt i,
        whose mask is dilated by one pixel; one decoder call per pair."""
        if len(texts) != len(prompts):
            raise ValueError("one visual prompt per text is needed")
        f = self.features
        pos, neg = self.prompt_masks(prompts)
        results = []
        for text, p, n in zip(texts, pos, neg):
            p = F.conv2d(p[None].float(), self.model.dilation_kernel.cpu(), padding=1)[0] > 0
            device = f.mask_features.device
            spatial = self.model.decoder.encode_spatial_prompt(f.multi_scale, f.mask_features, [p.to(device)],
                                                               [n.to(device)], self.rng)
            logits, similarity = self.grounding_logits([text], spatial=spatial)
            results += self._results(logits, similarity.clamp(min=0), [text])
        return results

    def predict_text(self, texts: Sequence[str]) -> List[MaskResult]:
        """Referring segmentation: the best mask for each text (e.g. "the red cup")."""
        logits, similarity = self.grounding_logits(texts)
        return self._results(logits, similarity.clamp(min=0), texts)

    @torch.no_grad()
    def spatial_logits(self, pos_masks: Sequence[Tensor], neg_masks: Sequence[Tensor],
                       memory: Optional[Tensor] = None, reference: Optional[SpatialPrompt] = None) -> Tensor:
        """One decoder call with one visual prompt per batch row (official demo layout) -> (n, h, w)
        logits of each prompt's selected mask. memory: (n, h, w) logits of the previous round."""
        n = len(pos_masks) if reference is None else reference.pos_query.shape[1]
        mask_features, multi_scale = self._features_per_prompt(n)
        device = mask_features.device
        spatial = reference or self.model.decoder.encode_spatial_prompt(
            multi_scale, mask_features, [m.to(device) for m in pos_masks], [m.to(device) for m in neg_masks], self.rng)
        prev = memory[:, None] if memory is not None else None
        out = self.model.decoder(multi_scale, mask_features, spatial=spatial, prev_mask=prev, rng=self.rng)
        return out.selected_masks[:, 0]

    def predict_visual(self, prompts: Sequence[VisualPrompt],
                       memory: Optional[Sequence[MaskResult]] = None) -> List[MaskResult]:
        """One mask per visual prompt. memory: the previous round's results for the same objects."""
        if not prompts or not all(p.has_positive() for p in prompts):
            raise ValueError("every visual prompt needs a positive point, a box, a scribble or a mask")
        pos, neg = self.prompt_masks(prompts)
        prev = torch.stack([m.low_res_logits for m in memory]) if memory else None
        return self._results(self.spatial_logits(pos, neg, prev))

    def predict_reference(self, reference: SpatialPrompt) -> List[MaskResult]:
        return self._results(self.spatial_logits([], [], reference=reference))
