"""Checks shared by the assignments' visible tests, their hidden tests, the student's self-check
and the project's own tests — plus the instructor's nbgrader commands (:mod:`course_lib.grading.autograder.cli`).

A check takes the student's callable, compares it with PyTorch's own op on seeded inputs and raises
:class:`CheckFailure` with the case, its inputs and the difference (shape, dtype, values with the
tolerance used). Tolerances are defined once, in :data:`TOLERANCES`. Checks keep no notebook state,
so they can also run a student's function in another process.

Example (in an assignment's test cell)::

    from course_lib.grading import check_conv2d
    check_conv2d(conv2d_loops)
"""
from course_lib.grading.architecture_checks import (BASIC_CASES, BOTTLENECK_CASES, COST_CASES, INCEPTION_CASES,
                                                    SEPARABLE_CASES, BlockCase, InceptionCase, SeparableCase,
                                                    check_basic_block, check_bottleneck, check_conv_costs,
                                                    check_depthwise_separable, check_inception, check_model_file,
                                                    check_test_accuracy)
from course_lib.grading.training_checks import (AUGMENT_CASES, BALANCE_CASES, SCHEDULE_CASES, check_balanced_accuracy,
                                                check_class_weights, check_finetune_setup, check_model_balanced_accuracy,
                                                check_random_crop_flip, check_sample_weights, check_warmup_cosine)
from course_lib.grading.compare import (FROM_SCRATCH, TOLERANCES, CheckFailure, ForbiddenCall, describe_difference,
                                        tolerance)
from course_lib.grading.rnn_checks import (BPTT_CASES, CELL_CASES, CLIP_CASES, RNN_FROM_SCRATCH, BPTTCase, CellCase,
                                           ClipCase, check_clip_grad_norm, check_gru_cell, check_lstm_cell,
                                           check_rnn_backward, check_rnn_cell)
from course_lib.grading.sequence_checks import build_classifier, check_classifier_accuracy, check_sequence_classifier
from course_lib.grading.conv_checks import (CONV_CASES, SIZE_CASES, ConvCase, SizeCase, check_conv2d,
                                            check_conv2d_backward, check_conv_output_size, check_im2col)
from course_lib.grading.attention_checks import (ATTENTION_CASES, SE_CASES, AttentionCase, SECase,
                                                 check_attention_pool, check_spatial_softmax, check_squeeze_excitation)
from course_lib.grading.gan_checks import (LOSS_CASES, NET_CASES, STEP_CASES, TRAINING_CASES, LossCase, NetCase,
                                           StepCase, TrainingCase, check_discriminator, check_gan_losses,
                                           check_generator, check_short_training, check_train_step)
from course_lib.grading.pool_checks import (POOL_CASES, PoolCase, check_avg_pool2d, check_avg_pool2d_backward,
                                            check_max_pool2d, check_max_pool2d_backward)
from course_lib.grading.weights import load_state_dict_file
from course_lib.grading.training_basics_checks import (BN_CASES, DROPOUT_CASES, GRAD_CASES, RELERR_CASES,
                                                       TRAINING_FROM_SCRATCH, BNCase, DropoutCase, GradCase, RelErrCase,
                                                       check_batchnorm_backward, check_batchnorm_forward, check_dropout,
                                                       check_numerical_gradient, check_relative_error)
from course_lib.grading.optim_init_checks import (ADAM_CASES, ADAMW_CASES, INIT_CASES, SGD_CASES, SMOOTHING_CASES,
                                                  InitCase, OptimCase, SmoothingCase, check_adam_step, check_adamw_step,
                                                  check_deep_stack, check_init_std, check_sgd_step,
                                                  check_smoothed_cross_entropy)
from course_lib.grading.receptive_field_checks import (COVER_CASES, FIELD_CASES, FieldCase, check_layers_to_cover,
                                                      check_receptive_field)
from course_lib.grading.network_cost_checks import (LAYER_CASES, NETWORK_CASES, LayerCase, check_layer_costs,
                                                   check_network_cost)
from course_lib.grading.cam_checks import CAM_CASES, GRAD_CAM_CASES, CamCase, check_class_activation_map, check_grad_cam
from course_lib.grading.segmentation_checks import (DICE_CASES, IOU_CASES, SEGMENTATION_MIN_IOU, SEGMENTATION_TASK,
                                                    UNET_CASES, MaskCase, SegmentationTask, UNetCase, check_mean_iou,
                                                    check_segmentation_model, check_soft_dice_loss, check_unet_shapes)

__all__ = [
    "FROM_SCRATCH", "TOLERANCES", "CheckFailure", "ForbiddenCall", "describe_difference", "tolerance",
    "SizeCase", "ConvCase", "PoolCase", "SIZE_CASES", "CONV_CASES", "POOL_CASES",
    "check_conv_output_size", "check_im2col", "check_conv2d", "check_conv2d_backward",
    "check_max_pool2d", "check_avg_pool2d", "check_max_pool2d_backward", "check_avg_pool2d_backward",
    "BlockCase", "InceptionCase", "SeparableCase", "BASIC_CASES", "BOTTLENECK_CASES", "INCEPTION_CASES",
    "SEPARABLE_CASES", "COST_CASES", "check_basic_block", "check_bottleneck", "check_inception",
    "check_depthwise_separable", "check_conv_costs", "check_model_file", "check_test_accuracy",
    "FieldCase", "LayerCase", "FIELD_CASES", "COVER_CASES", "LAYER_CASES", "NETWORK_CASES", "check_receptive_field",
    "check_layers_to_cover", "check_layer_costs", "check_network_cost",
    "AUGMENT_CASES", "BALANCE_CASES", "SCHEDULE_CASES", "check_random_crop_flip", "check_class_weights",
    "check_sample_weights", "check_balanced_accuracy", "check_warmup_cosine", "check_finetune_setup",
    "check_model_balanced_accuracy",
    "RNN_FROM_SCRATCH", "CellCase", "BPTTCase", "ClipCase", "CELL_CASES", "BPTT_CASES", "CLIP_CASES",
    "check_rnn_cell", "check_lstm_cell", "check_gru_cell", "check_rnn_backward", "check_clip_grad_norm",
    "check_sequence_classifier", "check_classifier_accuracy", "load_state_dict_file", "build_classifier",
    # assignment 4
    "SECase", "AttentionCase", "SE_CASES", "ATTENTION_CASES", "check_squeeze_excitation", "check_spatial_softmax",
    "check_attention_pool", "UNetCase", "MaskCase", "SegmentationTask", "UNET_CASES", "DICE_CASES", "IOU_CASES",
    "SEGMENTATION_TASK", "SEGMENTATION_MIN_IOU", "check_unet_shapes", "check_soft_dice_loss", "check_mean_iou",
    "check_segmentation_model",
    "CamCase", "CAM_CASES", "GRAD_CAM_CASES", "check_class_activation_map", "check_grad_cam",
    # assignment 5
    "NetCase", "LossCase", "StepCase", "TrainingCase", "NET_CASES", "LOSS_CASES", "STEP_CASES", "TRAINING_CASES",
    "check_generator", "check_discriminator", "check_gan_losses", "check_train_step", "check_short_training",
    # assignment 7
    "TRAINING_FROM_SCRATCH", "RelErrCase", "GradCase", "BNCase", "DropoutCase", "SmoothingCase", "OptimCase",
    "InitCase", "RELERR_CASES", "GRAD_CASES", "BN_CASES", "DROPOUT_CASES", "SMOOTHING_CASES", "SGD_CASES",
    "ADAM_CASES", "ADAMW_CASES", "INIT_CASES", "check_relative_error", "check_numerical_gradient",
    "check_batchnorm_forward", "check_batchnorm_backward", "check_dropout", "check_smoothed_cross_entropy",
    "check_sgd_step", "check_adam_step", "check_adamw_step", "check_init_std", "check_deep_stack",
]
