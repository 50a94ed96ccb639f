"""The neural work of camera frames for robots elsewhere (triton_protocol): a batch of frame
requests in, a response per request out, nothing kept between batches. The images of a batch that
share a canvas go through the image encoder together (the torch backend; an exported graph or
engine, built for one image, takes them one by one); each frame's objects then go through the frame
engine in one decoder pass, as in the robot's own process."""
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from seem_ros.inference.frame_engine import FrameFeatures
from seem_ros.inference.frame_slots import ObjectQuery
from seem_ros.inference.predictor import SeemPredictor
from seem_ros.model.visual_sampler import encode_drawn_points
from seem_ros.runtime.triton_protocol import TEXT, VISUAL, FrameRequest, FrameResponse, drawn_points


class FrameServer:
    def __init__(self, predictor: SeemPredictor):
        self.predictor = predictor
        self.device = predictor.model.device

    @torch.inference_mode()
    def __call__(self, requests: Sequence[FrameRequest]) -> List[FrameResponse]:
        images = [(r.image, r.input_hw) for r in requests]
        for r in requests:
            images += [(image[:size[2], :size[3]], size[:2]) for image, size in zip(r.reference_images, r.reference_sizes)]
        frames = self._encode(images)
        responses, first_reference = [], len(requests)
        for i, request in enumerate(requests):
            references = frames[first_reference:first_reference + len(request.reference_images)]
            first_reference += len(request.reference_images)
            responses.append(self._decode(request, frames[i], references))
        return responses

    def _encode(self, images: Sequence[Tuple[np.ndarray, np.ndarray]]) -> List[FrameFeatures]:
        """Each (canvas image, input size) through the image encoder, prepared for the frame engine."""
        predictor = self.predictor
        tensors = []
        for image, (height, width) in images:
            if image.ndim != 3 or image.shape[2] != 3 or not 0 < height <= image.shape[0] or not 0 < width <= image.shape[1]:
                raise ValueError(f"an image of shape {image.shape} with input size {height}x{width}")
            tensors.append(predictor.input_tensor(image[:height, :width], tuple(image.shape[:2])))
        batched = predictor.image_encoder == predictor.model.encode_image  # eager torch takes any batch
        by_canvas: Dict[Tuple[int, int], List[int]] = {}
        for i, tensor in enumerate(tensors):
            by_canvas.setdefault(tuple(tensor.shape[-2:]), []).append(i)
        frames: List[FrameFeatures] = [None] * len(tensors)  # type: ignore[list-item]
        for indices in by_canvas.values():
            groups = [indices] if batched else [[i] for i in indices]
            for group in groups:
                mask_features, multi_scale = predictor.image_encoder(torch.cat([tensors[i] for i in group]))
                for row, i in enumerate(group):
                    frames[i] = predictor.engine.prepare(mask_features[row:row + 1],
                                                         [m[row:row + 1] for m in multi_scale])
        return frames

    def _decode(self, request: FrameRequest, frame: FrameFeatures, references: Sequence[FrameFeatures]
                ) -> FrameResponse:
        engine, device = self.predictor.engine, self.device
        kinds = request.row_kind
        rows = [i for i, kind in enumerate(kinds) if kind in (TEXT, VISUAL)]
        queries: Dict[int, ObjectQuery] = {}
        for i in rows:
            if kinds[i] == TEXT:
                tokens = torch.from_numpy(request.text_tokens[i, :int(request.text_length[i])]).to(device)
                queries[i] = ObjectQuery(text_tokens=tokens, sentence=torch.from_numpy(request.sentence[i]).to(device))
        visual = [i for i in rows if kinds[i] == VISUAL]
        for source in sorted({int(request.point_image[i]) for i in visual}):
            on = frame if source < 0 else references[source]
            group = [i for i in visual if int(request.point_image[i]) == source]
            drawn = drawn_points([request.points[i] for i in group], device)
            prompts = encode_drawn_points(drawn, on.mask_features, on.spatial_maps, engine.decoder.pn_indicator.weight)
            for row, i in enumerate(group):
                sentence = request.sentence[i]
                queries[i] = ObjectQuery(
                    spatial=prompts.image(row),
                    memory=torch.from_numpy(request.memory[i]).to(device) if request.has_memory[i] else None,
                    sentence=torch.from_numpy(sentence).to(device) if sentence.any() else None)
        class_embeddings = (torch.from_numpy(request.class_embeddings).to(device)
                            if len(request.class_embeddings) else None)
        decoded = engine.decode(frame, [queries[i] for i in rows], class_embeddings=class_embeddings)
        h4, w4 = frame.mask_features.shape[-2:]
        # the padding rows after the last object are not sent back; one row at least (Triton's Python
        # backend passes no tensor with a zero dimension)
        used = rows[-1] + 1 if rows else 1
        logits = np.zeros((used, h4, w4), np.float32)
        match = np.ones(used, np.float32)
        logits[rows] = decoded.logits.float().cpu().numpy()
        match[rows] = decoded.match.float().cpu().numpy()
        if decoded.class_logits is None:
            return FrameResponse(logits, match, np.zeros((0, 0), np.float32), np.zeros((0, h4, w4), np.float32))
        return FrameResponse(logits, match, decoded.class_logits.float().cpu().numpy(),
                             decoded.object_masks.float().cpu().numpy())
