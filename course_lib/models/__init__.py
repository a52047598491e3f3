"""The classic convolutional architectures of chapter 3, one file per family (torchvision-style).

Every builder takes ``num_classes`` and ``in_channels`` (ImageNet defaults: 1000 and 3; LeNet-5:
10 and 1) and ``small=True`` for 28×28 inputs such as Fashion-MNIST, which replaces the
down-sampling stem by a stride-1 3×3 convolution so that the small image is not shrunk to nothing.
Most also take a ``width`` multiplier for cheap variants. Example::

    from course_lib.models import resnet18
    imagenet = resnet18()                                              # 11.7 M parameters
    fashion = resnet18(num_classes=10, in_channels=1, small=True, width=0.25)
"""
from course_lib.models.alexnet import AlexNet, alexnet
from course_lib.models.densenet import DenseBlock, DenseLayer, DenseNet, Transition, densenet121
from course_lib.models.efficientnet import (MBConv, EfficientNet, compound_scaling,
                                            efficientnet, efficientnet_b0)
from course_lib.models.googlenet import (GoogLeNet, GoogLeNetOutputs, Inception, InceptionAux, googlenet,
                                         googlenet_loss)
from course_lib.models.inception import FactorizedConv2d, InceptionFactorized
from course_lib.models.inception_resnet import InceptionResNetA
from course_lib.models.layers import ConvNormAct, make_divisible
from course_lib.models.lenet import LeNet5, lenet5
from course_lib.models.mobilenet import DepthwiseSeparableConv, MobileNetV1, mobilenet_v1, separable_cost_ratio
from course_lib.models.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50
from course_lib.models.vgg import VGG, vgg, vgg16

__all__ = [
    "AlexNet", "alexnet", "DenseBlock", "DenseLayer", "DenseNet", "Transition", "densenet121",
    "MBConv", "EfficientNet", "compound_scaling", "efficientnet", "efficientnet_b0",
    "GoogLeNet", "GoogLeNetOutputs", "Inception", "InceptionAux", "googlenet", "googlenet_loss",
    "FactorizedConv2d", "InceptionFactorized", "InceptionResNetA", "ConvNormAct", "make_divisible", "LeNet5", "lenet5",
    "DepthwiseSeparableConv", "MobileNetV1", "mobilenet_v1", "separable_cost_ratio",
    "BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50", "VGG", "vgg", "vgg16",
]
