// torchvision's convolutional classifiers in graft; importing this registers their names:
//   alexnet · resnet18/34/50/101/152 · mobilenet_v2 · convnext_tiny/small/base/large ·
//   regnety_400mf, regnety_800mf, regnety_1_6gf (torchvision's regnet_y_*)
// Modules carry torchvision's state-dict names, so a torchvision checkpoint (converted to
// safetensors) loads with model.loadStateDict.
import { registerFamily } from './config.js';
import { ALEXNET_MODELS, AlexNet } from './alexnet.js';
import { RESNET_MODELS, ResNet } from './resnet.js';
import { MOBILENET_V2_MODELS, MobileNetV2 } from './mobilenet-v2.js';
import { CONVNEXT_MODELS, ConvNeXt } from './convnext.js';
import { REGNET_MODELS, RegNet } from './regnet.js';

export { AlexNet, ALEXNET_MODELS, type AlexNetConfig } from './alexnet.js';
export { ResNet, BasicBlock, Bottleneck, RESNET_MODELS, type ResNetConfig } from './resnet.js';
export { MobileNetV2, InvertedResidual, makeDivisible, MOBILENET_V2_MODELS, type MobileNetV2Config } from './mobilenet-v2.js';
export { ConvNeXt, CNBlock, CONVNEXT_MODELS, type ConvNeXtConfig } from './convnext.js';
export { RegNet, ResBottleneckBlock, REGNET_MODELS, type RegNetConfig } from './regnet.js';
export { torchvisionPreprocess, withOverrides, type ConfigEntry } from './config.js';

registerFamily('alexnet', ALEXNET_MODELS, { dropRate: 'dropout' }, (c, n, p) => new AlexNet(c, n, p));
registerFamily('resnet', RESNET_MODELS, {}, (c, n, p) => new ResNet(c, n, p));
registerFamily('mobilenet_v2', MOBILENET_V2_MODELS, { dropRate: 'dropout' }, (c, n, p) => new MobileNetV2(c, n, p));
registerFamily('convnext', CONVNEXT_MODELS, { dropPathRate: 'stochasticDepthProb' }, (c, n, p) => new ConvNeXt(c, n, p));
registerFamily('regnet', REGNET_MODELS, {}, (c, n, p) => new RegNet(c, n, p));
